//! Links the system libtiff (Debian `libtiff-dev`, found with pkg-config as `libtiff-4`,
//! version 4.5 or later for `TIFFOpenOptions`) and compiles the small C side in `csrc/`.
fn main() {
    let lib = match pkg_config::Config::new()
        .atleast_version("4.5")
        .cargo_metadata(false)
        .probe("libtiff-4")
    {
        Ok(lib) => lib,
        Err(e) => panic!(
            "vinscan-tiff needs libtiff >= 4.5 with its headers (Debian: apt-get install libtiff-dev; ops/setup.sh does): {e}"
        ),
    };
    let mut build = cc::Build::new();
    build.file("csrc/memtiff.c").warnings(true).extra_warnings(true);
    for dir in &lib.include_paths {
        build.include(dir);
    }
    // the static C side first, then libtiff after it, so that the linker resolves its calls
    build.compile("vinscan_memtiff");
    for dir in &lib.link_paths {
        println!("cargo:rustc-link-search=native={}", dir.display());
    }
    for name in &lib.libs {
        println!("cargo:rustc-link-lib={name}");
    }
    println!("cargo:rerun-if-changed=csrc/memtiff.c");
}
