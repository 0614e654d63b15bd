//! Helpers for the CLI integration tests: the real binary, the tiny test model, the project's
//! Python environment (independent schema validation) and generated scans.
#![allow(dead_code)]

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use image::{ImageFormat, Rgb, RgbImage};

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repo root")
}

pub fn model_dir() -> PathBuf {
    let dir = std::env::var_os("VINSCAN_TEST_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/test-models/tiny"));
    assert!(
        dir.join("model.gguf").is_file(),
        "no test model in {}: run `ops/make-test-model.sh tiny {}` (ops/test.sh does)",
        dir.display(),
        dir.display()
    );
    dir
}

/// The tiny random `llama` text model (the text stage's stand-in for VinaLLaMA).
pub fn text_model() -> PathBuf {
    let dir = std::env::var_os("VINSCAN_TEST_TEXT_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/test-models/tiny-llama"));
    let model = dir.join("model.gguf");
    assert!(
        model.is_file(),
        "no test text model in {}: run `ops/make_test_model.py tiny-llama {}` (ops/test-env.sh does)",
        dir.display(),
        dir.display()
    );
    model
}

pub fn python() -> PathBuf {
    let p = std::env::var_os("VINSCAN_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv/bin/python"));
    assert!(
        p.exists(),
        "{} missing: run ops/python-env.sh (ops/test.sh does)",
        p.display()
    );
    p
}

/// The vinscan binary with the tiny model, one inference thread and no progress bar.
pub fn vinscan(home: &Path) -> Command {
    let dir = model_dir();
    let mut c = Command::new(env!("CARGO_BIN_EXE_vinscan"));
    c.env("VINSCAN_MODEL", dir.join("model.gguf"))
        .env("VINSCAN_MMPROJ", dir.join("mmproj.gguf"))
        .env("VINSCAN_THREADS", "1")
        .env("VINSCAN_NO_PROGRESS", "1")
        .env("VINSCAN_LOG_FORMAT", "json")
        .env("HF_HOME", home.join("hf"))
        .env_remove("VINSCAN_PIPELINES_DIR")
        .env_remove("VINSCAN_SCHEMAS_DIR")
        .env_remove("VINSCAN_TEXT_MODEL");
    c
}

pub fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("run vinscan");
    eprintln!(
        "{}",
        String::from_utf8_lossy(&out.stderr)
            .lines()
            .rev()
            .take(20)
            .collect::<Vec<_>>()
            .join("\n")
    );
    out
}

/// Validates page-record files with Python's jsonschema; returns (passed, failed, report).
pub fn validate(files: &[PathBuf]) -> (usize, usize, String) {
    validate_in(&repo_root(), files)
}

/// [`validate`] with the records' `schema` paths relative to `root`.
pub fn validate_in(root: &Path, files: &[PathBuf]) -> (usize, usize, String) {
    let out = Command::new(python())
        .arg(repo_root().join("tests/tools/validate_outputs.py"))
        .arg(root)
        .args(files)
        .output()
        .expect("run validator");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let last = report
        .lines()
        .rev()
        .find(|l| l.contains(" passed, "))
        .unwrap_or_default()
        .to_owned();
    let nums: Vec<usize> = last
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|s| s.parse().ok())
        .collect();
    assert_eq!(nums.len(), 2, "validator output: {report}");
    (nums[0], nums[1], report)
}

/// A document-like scan: paper, a header band and lines of "text" whose layout depends on `seed`.
pub fn scan(width: u32, height: u32, seed: u32) -> RgbImage {
    let mut img = RgbImage::from_pixel(width, height, Rgb([246, 244, 238]));
    let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(12345);
    let mut next = |m: u32| {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        state % m.max(1)
    };
    let line_h = (height / 40).max(4);
    let mut y = line_h * 2;
    while y + line_h < height - line_h {
        let mut x = width / 20 + next(width / 10 + 1);
        while x < width - width / 20 {
            let word = 3 + next(width / 8 + 1);
            let ink = 20 + next(60) as u8;
            for yy in y..(y + line_h * 2 / 3).min(height) {
                for xx in x..(x + word).min(width) {
                    img.put_pixel(xx, yy, Rgb([ink, ink, ink + 10]));
                }
            }
            x += word + 4 + next(12);
        }
        y += line_h + next(line_h);
    }
    img
}

pub fn encode(img: &RgbImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, format).expect("encode");
    out.into_inner()
}

/// A multi-page RGB TIFF.
pub fn multipage_tiff(pages: &[RgbImage]) -> Vec<u8> {
    let mut buf = Cursor::new(Vec::new());
    {
        let mut enc = tiff::encoder::TiffEncoder::new(&mut buf).expect("tiff encoder");
        for p in pages {
            enc.write_image::<tiff::encoder::colortype::RGB8>(p.width(), p.height(), p.as_raw())
                .expect("tiff page");
        }
    }
    buf.into_inner()
}

/// A PDF of A4 pages, each page's lines of ASCII text set in Helvetica from the top (PDF 1.7,
/// ISO 32000-1: one content stream and the standard font per page, an exact xref table).
pub fn text_pdf(pages: &[Vec<String>]) -> Vec<u8> {
    sized_text_pdf(pages, (595, 842), 11)
}

/// [`text_pdf`] on pages of `size` points at `font_size` points.
pub fn sized_text_pdf(pages: &[Vec<String>], size: (u32, u32), font_size: u32) -> Vec<u8> {
    let escape = |s: &str| s.replace('\\', "\\\\").replace('(', "\\(").replace(')', "\\)");
    // objects: 1 catalog, 2 pages, 3 font, then per page: page, content
    let mut objects: Vec<String> = vec![
        "<< /Type /Catalog /Pages 2 0 R >>".to_owned(),
        String::new(),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_owned(),
    ];
    let mut kids = Vec::new();
    for lines in pages {
        let page_id = objects.len() + 1;
        let margin = size.0 / 16;
        let mut content = format!(
            "BT /F1 {font_size} Tf {} TL {margin} {} Td\n",
            font_size + font_size / 4 + 1,
            size.1 - margin - font_size
        );
        for line in lines {
            content.push_str(&format!("({}) Tj T*\n", escape(line)));
        }
        content.push_str("ET\n");
        objects.push(format!(
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {} {}] /Resources << /Font << /F1 3 0 R >> >> /Contents {} 0 R >>",
            size.0,
            size.1,
            page_id + 1
        ));
        objects.push(format!(
            "<< /Length {} >>\nstream\n{content}endstream",
            content.len()
        ));
        kids.push(format!("{page_id} 0 R"));
    }
    objects[1] = format!(
        "<< /Type /Pages /Kids [{}] /Count {} >>",
        kids.join(" "),
        pages.len()
    );
    let mut out = b"%PDF-1.7\n".to_vec();
    let mut offsets = Vec::new();
    for (i, body) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n{body}\nendobj\n", i + 1).as_bytes());
    }
    let xref = out.len();
    out.extend_from_slice(format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes());
    for o in offsets {
        out.extend_from_slice(format!("{o:010} 00000 n \n").as_bytes());
    }
    out.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    out
}

/// A synthetic VAT invoice (invented seller, buyer and goods) of `pages` pages whose line
/// items continue from page to page: the header on page 1, `per_page` items on every page,
/// the totals on the last.
pub fn invoice_pdf(pages: usize, per_page: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut n = 0;
    for p in 0..pages {
        let mut lines = Vec::new();
        if p == 0 {
            lines.extend(
                [
                    "HOA DON GIA TRI GIA TANG",
                    "Mau so: 1   Ky hieu: C26TAA   So: 0000123   Ngay 15 thang 03 nam 2026",
                    "Don vi ban hang: CONG TY TNHH THU NGHIEM VINSCAN",
                    "Ma so thue: 0100109106",
                    "Don vi mua hang: CONG TY CO PHAN MAU SO MOT",
                    "Ma so thue: 0312345675",
                    "STT  Ten hang hoa, dich vu      DVT   So luong   Don gia    Thanh tien",
                ]
                .map(str::to_owned),
            );
        } else {
            lines.push(format!("(tiep theo trang {p})"));
        }
        for _ in 0..per_page {
            n += 1;
            lines.push(format!(
                "{n:>3}  Mat hang thu nghiem so {n:<5}  cai   {:>3}   {:>8}   {:>10}",
                n,
                10_000,
                n * 10_000
            ));
        }
        lines.push(format!("Trang {}/{pages}", p + 1));
        if p + 1 == pages {
            let subtotal = n * (n + 1) / 2 * 10_000;
            lines.push(format!("Cong tien hang: {subtotal}"));
            lines.push(format!("Thue suat GTGT: 10%   Tien thue GTGT: {}", subtotal / 10));
            lines.push(format!("Tong cong tien thanh toan: {}", subtotal + subtotal / 10));
        }
        out.push(lines);
    }
    text_pdf(&out)
}

/// A synthetic CCCD (chip card) front and back as one-page PDFs of the card's size (85.6 ×
/// 54 mm, ISO/IEC 7810 ID-1), text as printed without diacritics (the standard PDF font has
/// none): an invented person, the ID number `001099993908` and a TD1 MRZ whose check digits
/// are correct, or with `broken` the birth-date check digit wrong and the printed birth date
/// disagreeing with the MRZ.
pub fn card_pdfs(broken: bool) -> (Vec<u8>, Vec<u8>) {
    let birth = if broken { "13/08/1999" } else { "13/03/1999" };
    let front = vec![
        "CONG HOA XA HOI CHU NGHIA VIET NAM".to_owned(),
        "CAN CUOC CONG DAN".to_owned(),
        "So / No.: 001099993908".to_owned(),
        "Ho va ten / Full name: NGUYEN VAN AN".to_owned(),
        format!("Ngay sinh / Date of birth: {birth}"),
        "Gioi tinh / Sex: Nam   Quoc tich / Nationality: Viet Nam".to_owned(),
        "Que quan / Place of origin: Xa Thu Nghiem, Ha Noi".to_owned(),
        "Noi thuong tru: So 1 Pho Mau, Ha Noi".to_owned(),
        "Co gia tri den / Date of expiry: 13/03/2024".to_owned(),
    ];
    let birth_check = if broken { '8' } else { '7' };
    let back = vec![
        "Dac diem nhan dang: Not ruoi 1cm tren long may phai".to_owned(),
        "Ngay, thang, nam / Date: 01/04/2021".to_owned(),
        "CUC TRUONG CUC CANH SAT QUAN LY HANH CHINH VE TRAT TU XA HOI".to_owned(),
        String::new(),
        "IDVNM0999939080001099993908<<<".to_owned(),
        format!("990313{birth_check}M2403133VNM<<<<<<<<<<<9"),
        "NGUYEN<<VAN<AN<<<<<<<<<<<<<<<<".to_owned(),
    ];
    let card = |lines| sized_text_pdf(&[lines], (243, 153), 6);
    (card(front), card(back))
}

/// A local HTTP server speaking the Hub's file protocol (`tests/tools/fake_hub.py`) over
/// `root` (`root/<owner>/<repo>/<file>`); stopped when dropped.
pub struct Hub {
    child: std::process::Child,
    pub port: u16,
}

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn hub(root: &Path) -> Hub {
    let mut child = Command::new(python())
        .arg(repo_root().join("tests/tools/fake_hub.py"))
        .arg(root)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start fake hub");
    let mut line = String::new();
    let stdout = child.stdout.take().expect("stdout");
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).expect("port");
    Hub {
        child,
        port: line.trim().parse().expect("port number"),
    }
}
