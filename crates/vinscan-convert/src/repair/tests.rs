//! Repair of small projectors written by the crate's own GGUF writer.

use super::*;
use crate::gguf::{GgufFile, TensorInfo, TensorType, Value};

/// A 28 px, 14 px-patch projector (4 patches + the class row = 5 position rows of 3 values,
/// row `r` holding `r`), a q8_0 tensor before the table and an f16 one after it.
fn projector(dir: &Path, projector_type: &str, extra: &[(&str, Value)]) -> PathBuf {
    let path = dir.join(format!("{projector_type}.gguf"));
    write_projector(&path, projector_type, extra);
    path
}

/// An InternVL [`projector`] at `path`.
fn projector_named(path: &Path, extra: &[(&str, Value)]) {
    write_projector(path, "internvl", extra);
}

fn write_projector(path: &Path, projector_type: &str, extra: &[(&str, Value)]) {
    write_projector_with_table(path, projector_type, extra, TensorType::F32);
}

fn write_projector_with_table(path: &Path, projector_type: &str, extra: &[(&str, Value)], table: TensorType) {
    let mut meta = vec![
        ("general.architecture", Value::Str("clip".into())),
        ("clip.projector_type", Value::Str(projector_type.into())),
        ("clip.vision.image_size", Value::U32(28)),
        ("clip.vision.patch_size", Value::U32(14)),
        ("clip.vision.image_mean", Value::ArrF32(vec![0.5; 3])),
    ];
    meta.extend(extra.iter().cloned());
    let tensors = vec![
        TensorInfo {
            name: "v.patch_embd.weight".into(),
            ne: vec![32, 2],
            ty: TensorType::Q8_0,
        },
        TensorInfo {
            name: POSITION_TENSOR.into(),
            // as llama.cpp's converter writes InternViT's [1, N + 1, C] table: [C, N + 1, 1]
            ne: vec![3, 5, 1],
            ty: table,
        },
        TensorInfo {
            name: "mm.model.fc.weight".into(),
            ne: vec![7],
            ty: TensorType::F16,
        },
    ];
    let mut f = GgufFile::create(path, &meta, tensors.clone()).expect("create");
    let mut bytes = Vec::new();
    for t in &tensors {
        let values: Vec<f32> = if t.name == POSITION_TENSOR {
            (0..15).map(|i| (i / 3) as f32).collect()
        } else {
            (0..t.elements()).map(|i| i as f32 * 0.25 - 3.0).collect()
        };
        t.ty.encode(&values, &mut bytes);
        f.write_tensor(&bytes).expect("tensor");
    }
    f.finish().expect("finish");
}

/// Each tensor's bytes, by name.
fn tensor_bytes(path: &Path) -> Vec<(String, Vec<u8>)> {
    let h = read_header(path).expect("header");
    let data = std::fs::read(path).expect("read");
    h.tensors
        .iter()
        .map(|t| {
            let ty = match t.ggml_type {
                0 => TensorType::F32,
                1 => TensorType::F16,
                8 => TensorType::Q8_0,
                other => panic!("type {other}"),
            };
            let start = (h.data_start + t.offset) as usize;
            let n = ty.bytes(t.ne.iter().product()) as usize;
            (t.name.clone(), data[start..start + n].to_vec())
        })
        .collect()
}

#[test]
fn the_class_row_moves_last_and_every_other_byte_is_kept() {
    let dir = tempfile::tempdir().expect("tmp");
    let src = projector(dir.path(), "internvl", &[]);
    assert_eq!(inspect(&src).expect("inspect"), PositionOrder::Upstream);
    let dst = dir.path().join("fixed.gguf");
    let done = repair(&src, &dst).expect("repair");
    assert_eq!(done.rows, 5);
    assert_eq!(inspect(&dst).expect("inspect"), PositionOrder::ClassLast);
    let h = read_header(&dst).expect("header");
    assert_eq!(h.string(REPAIRED_FROM), Some(done.from_sha256.as_str()));
    assert_eq!(h.uint("clip.vision.image_size"), Some(28), "old keys kept");
    let (before, after) = (tensor_bytes(&src), tensor_bytes(&dst));
    for ((name, a), (name2, b)) in before.iter().zip(&after) {
        assert_eq!(name, name2);
        if name == POSITION_TENSOR {
            let rows: Vec<f32> = b
                .chunks(4)
                .step_by(3)
                .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
                .collect();
            assert_eq!(rows, [1.0, 2.0, 3.0, 4.0, 0.0], "row 0 (the class token's) last");
        } else {
            assert_eq!(a, b, "{name} unchanged");
        }
    }
    // the copy is what llama.cpp's layout says: a tensor's data ends the file
    let len = std::fs::metadata(&dst).expect("meta").len();
    let last = h.tensors.last().expect("tensor");
    assert_eq!(
        len,
        h.data_start + last.offset + 7 * 2 + 18,
        "f16 [7] and its padding"
    );
}

#[test]
fn only_an_upstream_internvl_projector_is_repaired() {
    let dir = tempfile::tempdir().expect("tmp");
    let other = projector(dir.path(), "mlp", &[]);
    assert_eq!(inspect(&other).expect("inspect"), PositionOrder::NotInternvl);
    let e = repair(&other, &dir.path().join("x.gguf")).expect_err("not internvl");
    assert!(e.to_string().contains("not an InternVL projector"), "{e}");
    let done = projector(
        dir.path(),
        "internvl",
        &[(POSITION_ORDER, Value::Str(CLASS_LAST.into()))],
    );
    assert_eq!(inspect(&done).expect("inspect"), PositionOrder::ClassLast);
    let e = repair(&done, &dir.path().join("x.gguf")).expect_err("already");
    assert!(e.to_string().contains("already class row last"), "{e}");
    assert!(!dir.path().join("x.gguf").exists());
}

#[test]
fn the_repaired_copy_is_made_once_and_remade_when_the_source_changes() {
    let dir = tempfile::tempdir().expect("tmp");
    let src = projector(dir.path(), "internvl", &[]);
    let (copy, repaired) = ensure_repaired(&src).expect("repair");
    assert!(repaired);
    assert_eq!(copy, dir.path().join("internvl.repaired.gguf"));
    let made = std::fs::metadata(&copy)
        .and_then(|m| m.modified())
        .expect("mtime");
    assert_eq!(ensure_repaired(&src).expect("again"), (copy.clone(), true));
    assert_eq!(
        std::fs::metadata(&copy)
            .and_then(|m| m.modified())
            .expect("mtime"),
        made,
        "reused"
    );
    // a new source (another revision's bytes): the copy is made again from it
    let src2 = projector(
        dir.path(),
        "internvl",
        &[("general.name", Value::Str("v2".into()))],
    );
    assert_eq!(src2, src);
    ensure_repaired(&src).expect("remade");
    let from = read_header(&copy)
        .expect("header")
        .string(REPAIRED_FROM)
        .map(str::to_owned);
    assert_eq!(from, Some(vinscan_core::hash::sha256_file(&src).expect("sha")));
    // a vinscan conversion is used as it is
    let done = projector(
        dir.path(),
        "done",
        &[(POSITION_ORDER, Value::Str(CLASS_LAST.into()))],
    );
    assert_eq!(ensure_repaired(&done).expect("as is"), (done.clone(), false));
}

#[test]
fn a_table_llama_cpp_cannot_add_is_not_repaired() {
    let dir = tempfile::tempdir().expect("tmp");
    let src = dir.path().join("f16.gguf");
    write_projector_with_table(&src, "internvl", &[], TensorType::F16);
    let e = repair(&src, &dir.path().join("y.gguf")).expect_err("f16 table");
    assert!(e.to_string().contains("only f32"), "{e}");
    assert!(!dir.path().join("y.gguf").exists());
}

#[test]
fn cut_or_foreign_files_are_refused_not_panicked_on() {
    let dir = tempfile::tempdir().expect("tmp");
    let src = projector(dir.path(), "internvl", &[]);
    let bytes = std::fs::read(&src).expect("read");
    let h = read_header(&src).expect("header");
    let cut = dir.path().join("cut.gguf");
    // every cut inside the header is a clear error
    let end = 24 + h.kv_bytes.len() + h.desc_bytes.len();
    for n in [0, 3, 10, 30, 60, 100, end - 1] {
        std::fs::write(&cut, &bytes[..n]).expect("write");
        assert!(inspect(&cut).is_err(), "cut at {n} of {end} accepted");
    }
    // cut inside the data: the table cannot be read whole
    std::fs::write(&cut, &bytes[..h.data_start as usize + 40]).expect("write");
    let e = repair(&cut, &dir.path().join("y.gguf")).expect_err("cut data");
    assert!(e.to_string().contains("ends"), "{e}");
    std::fs::write(&cut, b"not a gguf at all").expect("write");
    assert!(inspect(&cut).is_err());
    // a huge declared string length is refused before allocating
    let mut huge = bytes[..24].to_vec();
    huge.extend(u64::MAX.to_le_bytes());
    std::fs::write(&cut, &huge).expect("write");
    let e = inspect(&cut).expect_err("huge");
    assert!(e.to_string().contains("not a GGUF header"), "{e}");
}

#[test]
fn a_file_cut_anywhere_after_the_table_or_marked_by_vinscan_is_not_repaired() {
    let dir = tempfile::tempdir().expect("tmp");
    let src = projector(dir.path(), "internvl", &[]);
    let bytes = std::fs::read(&src).expect("read");
    let cut = dir.path().join("cut.gguf");
    let dst = dir.path().join("out.gguf");
    // the last tensor cut short: refused, and nothing left behind
    std::fs::write(&cut, &bytes[..bytes.len() - 20]).expect("write");
    let e = repair(&cut, &dst).expect_err("cut");
    assert!(e.to_string().contains("cut short"), "{e}");
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .expect("dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.contains("partial") || n == "out.gguf")
        .collect();
    assert!(left.is_empty(), "{left:?}");
    // a file with one of vinscan's keys but not the graph's order is not touched twice
    let odd = dir.path().join("odd.gguf");
    projector_named(&odd, &[(POSITION_ORDER, Value::Str("class-first".into()))]);
    let e = repair(&odd, &dst).expect_err("marked");
    assert!(e.to_string().contains("already has vinscan's key"), "{e}");
    // the copy never replaces its source
    let e = repair(&src, &src).expect_err("same file");
    assert!(e.to_string().contains("must not replace"), "{e}");
    assert_eq!(inspect(&src).expect("intact"), PositionOrder::Upstream);
    // a huge alignment is refused before anything is written
    let aligned = dir.path().join("aligned.gguf");
    projector_named(&aligned, &[("general.alignment", Value::U32(1 << 30))]);
    assert!(
        inspect(&aligned)
            .expect_err("alignment")
            .to_string()
            .contains("general.alignment")
    );
}

#[test]
fn a_file_aligned_to_64_bytes_keeps_its_alignment() {
    let dir = tempfile::tempdir().expect("tmp");
    let src = dir.path().join("a64.gguf");
    projector_named(&src, &[("general.alignment", Value::U32(64))]);
    // the crate's writer pads to 32: realign its data by hand to 64
    let h = read_header(&src).expect("header");
    let written_at = (24 + h.kv_bytes.len() + h.desc_bytes.len()).next_multiple_of(32);
    if !written_at.is_multiple_of(64) {
        let bytes = std::fs::read(&src).expect("read");
        let mut fixed = bytes[..written_at].to_vec();
        fixed.extend(std::iter::repeat_n(0u8, 32));
        fixed.extend(&bytes[written_at..]);
        std::fs::write(&src, fixed).expect("write");
    }
    let h = read_header(&src).expect("header");
    assert_eq!((h.alignment, h.data_start % 64), (64, 0));
    let dst = dir.path().join("a64.fixed.gguf");
    repair(&src, &dst).expect("repair");
    let out = read_header(&dst).expect("header");
    assert_eq!(out.data_start % 64, 0);
    let (before, after) = (tensor_bytes(&src), tensor_bytes(&dst));
    assert_eq!(
        before[0], after[0],
        "the tensor before the table is where its offset says"
    );
    assert_eq!(before[2], after[2]);
}

#[test]
fn an_unreadable_repaired_copy_is_made_again() {
    let dir = tempfile::tempdir().expect("tmp");
    let src = projector(dir.path(), "internvl", &[]);
    let (copy, _) = ensure_repaired(&src).expect("repair");
    std::fs::write(&copy, b"GGUF").expect("cut the copy");
    assert_eq!(ensure_repaired(&src).expect("remade"), (copy.clone(), true));
    assert_eq!(inspect(&copy).expect("whole again"), PositionOrder::ClassLast);
}
