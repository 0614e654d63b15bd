//! MRZ vectors: TD1 zones made with the PyPI `mrz` package (0.6, `TD1CodeGenerator`, which
//! computes ICAO 9303 check digits independently of this crate) for invented people, in the
//! Vietnamese layout (document number = the last 9 digits of the personal number, which
//! follows in the optional data).

use chrono::NaiveDate;
use serde_json::{Value, json};

use super::*;

/// (zone with `|` between lines, personal number, birth year, sex)
const VALID: &[(&str, &str, i32, &str)] = &[
    (
        "IDVNM0999939080001099993908<<<|9903137M2403133VNM<<<<<<<<<<<9|NGUYEN<<VAN<AN<<<<<<<<<<<<<<<<",
        "001099993908",
        1999,
        "M",
    ),
    (
        "IDVNM1580759548079158075954<<<|5809046F8309042VNM<<<<<<<<<<<8|TRAN<<QUOC<DUNG<<<<<<<<<<<<<<<",
        "079158075954",
        1958,
        "F",
    ),
    (
        "IDVNM0996110976048099611097<<<|9901177M2401173VNM<<<<<<<<<<<6|LE<<NGOC<LAN<<<<<<<<<<<<<<<<<<",
        "048099611097",
        1999,
        "M",
    ),
    (
        "IDVNM1850393175031185039317<<<|8502142F1002148VNM<<<<<<<<<<<1|PHAM<<BAO<TRAM<<<<<<<<<<<<<<<<",
        "031185039317",
        1985,
        "F",
    ),
    (
        "IDVNM2010732483092201073248<<<|0104034M2604033VNM<<<<<<<<<<<0|HOANG<<MINH<CHAU<<<<<<<<<<<<<<",
        "092201073248",
        2001,
        "M",
    ),
    (
        "IDVNM3074451402038307445140<<<|0701271F3201277VNM<<<<<<<<<<<5|VU<<DUC<KHOA<<<<<<<<<<<<<<<<<<",
        "038307445140",
        2007,
        "F",
    ),
    (
        "IDVNM0669934739040066993473<<<|6604215M9104211VNM<<<<<<<<<<<9|DANG<<THANH<PHONG<<<<<<<<<<<<<",
        "040066993473",
        1966,
        "M",
    ),
    (
        "IDVNM1586051369096158605136<<<|5810136F8310132VNM<<<<<<<<<<<8|BUI<<THI<BINH<<<<<<<<<<<<<<<<<",
        "096158605136",
        1958,
        "F",
    ),
    (
        "IDVNM0582318210075058231821<<<|5801187M8301183VNM<<<<<<<<<<<0|DO<<THU<HA<<<<<<<<<<<<<<<<<<<<",
        "075058231821",
        1958,
        "M",
    ),
    (
        "IDVNM1723036774026172303677<<<|7207059F9707058VNM<<<<<<<<<<<8|NGO<<HOAI<NAM<<<<<<<<<<<<<<<<<",
        "026172303677",
        1972,
        "F",
    ),
    (
        "IDVNM2071235149001207123514<<<|0710105M3210101VNM<<<<<<<<<<<2|NGUYEN<<VAN<AN<<<<<<<<<<<<<<<<",
        "001207123514",
        2007,
        "M",
    ),
    (
        "IDVNM3078557704079307855770<<<|0711065F3211061VNM<<<<<<<<<<<6|TRAN<<QUOC<DUNG<<<<<<<<<<<<<<<",
        "079307855770",
        2007,
        "F",
    ),
    (
        "IDVNM0666098517048066609851<<<|6610218M9110214VNM<<<<<<<<<<<5|LE<<NGOC<LAN<<<<<<<<<<<<<<<<<<",
        "048066609851",
        1966,
        "M",
    ),
    (
        "IDVNM1853904873031185390487<<<|8502186F1002182VNM<<<<<<<<<<<3|PHAM<<BAO<TRAM<<<<<<<<<<<<<<<<",
        "031185390487",
        1985,
        "F",
    ),
    (
        "IDVNM0665917833092066591783<<<|6601203M9101209VNM<<<<<<<<<<<4|HOANG<<MINH<CHAU<<<<<<<<<<<<<<",
        "092066591783",
        1966,
        "M",
    ),
    (
        "IDVNM1855205286038185520528<<<|8511180F1011186VNM<<<<<<<<<<<1|VU<<DUC<KHOA<<<<<<<<<<<<<<<<<<",
        "038185520528",
        1985,
        "F",
    ),
    (
        "IDVNM2018149838040201814983<<<|0106153M2606152VNM<<<<<<<<<<<8|DANG<<THANH<PHONG<<<<<<<<<<<<<",
        "040201814983",
        2001,
        "M",
    ),
    (
        "IDVNM3043791461096304379146<<<|0405085F2905084VNM<<<<<<<<<<<2|BUI<<THI<BINH<<<<<<<<<<<<<<<<<",
        "096304379146",
        2004,
        "F",
    ),
    (
        "IDVNM0727329486075072732948<<<|7204036M9704035VNM<<<<<<<<<<<6|DO<<THU<HA<<<<<<<<<<<<<<<<<<<<",
        "075072732948",
        1972,
        "M",
    ),
    (
        "IDVNM1905507081026190550708<<<|9008113F1508112VNM<<<<<<<<<<<5|NGO<<HOAI<NAM<<<<<<<<<<<<<<<<<",
        "026190550708",
        1990,
        "F",
    ),
    (
        "IDVNM2043019243001204301924<<<|0410036M2910035VNM<<<<<<<<<<<0|NGUYEN<<VAN<AN<<<<<<<<<<<<<<<<",
        "001204301924",
        2004,
        "M",
    ),
    (
        "IDVNM1665368007079166536800<<<|6607065F9107061VNM<<<<<<<<<<<5|TRAN<<QUOC<DUNG<<<<<<<<<<<<<<<",
        "079166536800",
        1966,
        "F",
    ),
];

fn zone(v: &str) -> String {
    v.replace('|', "\n")
}

fn today() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 30).expect("valid")
}

#[test]
fn generated_zones_pass_every_check_digit() {
    for (z, number, year, sex) in VALID {
        let td1 = Td1::parse(&zone(z)).expect("parses");
        assert_eq!(td1.failed_check_digits(), Vec::<&str>::new(), "{z}");
        assert_eq!(td1.personal_number(), Some(*number), "{z}");
        assert_eq!(td1.document_code(), "ID");
        assert_eq!(td1.issuing_state(), "VNM");
        assert_eq!(td1.sex(), Sex::parse(sex));
        let birth = birth_date(&td1, None, today()).expect("a birth date");
        assert_eq!(
            chrono::Datelike::year(&birth),
            *year,
            "{z}: century from the MRZ's own number"
        );
    }
}

/// Each zone with one check digit changed: the digit at (line, column) and the field(s) whose
/// check must then fail. The document number's digit sits inside the composite's range.
#[test]
fn a_changed_check_digit_is_caught() {
    let spots: [(usize, usize, &[&str]); 4] = [
        (0, 15, &["document number", "composite"]),
        (1, 7, &["birth date", "composite"]),
        (1, 15, &["expiry date", "composite"]),
        (1, 30, &["composite"]),
    ];
    let mut cases = 0;
    for (i, (z, ..)) in VALID.iter().enumerate() {
        let (line, col, expected) = spots[i % 4];
        let mut lines: Vec<Vec<u8>> = z.split('|').map(|l| l.as_bytes().to_vec()).collect();
        let d = lines[line][col - 1];
        lines[line][col - 1] = b'0' + (d - b'0' + 1 + (i as u8 % 8)) % 10;
        let broken = lines
            .into_iter()
            .map(|l| String::from_utf8(l).expect("ascii"))
            .collect::<Vec<_>>()
            .join("\n");
        let td1 = Td1::parse(&broken).expect("parses");
        assert_eq!(td1.failed_check_digits(), expected.to_vec(), "{broken}");
        cases += 1;
    }
    assert!(cases >= 20);
}

#[test]
fn a_changed_data_character_is_caught() {
    for (z, ..) in VALID {
        // The fourth digit of the birth date: covered by its own digit and the composite.
        let mut lines: Vec<Vec<u8>> = z.split('|').map(|l| l.as_bytes().to_vec()).collect();
        let d = lines[1][3];
        lines[1][3] = if d == b'0' { b'1' } else { b'0' };
        let broken: Vec<String> = lines
            .into_iter()
            .map(|l| String::from_utf8(l).expect("ascii"))
            .collect();
        let td1 = Td1::parse(&broken.join("\n")).expect("parses");
        assert_eq!(td1.failed_check_digits(), vec!["birth date", "composite"], "{z}");
    }
}

#[test]
fn check_digits_follow_icao_examples() {
    // ICAO 9303 Part 3 §4.9 worked example: date 520727 gives 3; document number
    // L898902C3 gives 6 (Part 4's specimen passport).
    assert_eq!(check_digit("520727"), 3);
    assert_eq!(check_digit("L898902C3"), 6);
    assert_eq!(check_digit("<<<<<<"), 0);
    assert_eq!(check_digit("D23145890"), 7);
}

#[test]
fn zones_in_other_shapes() {
    let z = zone(VALID[0].0);
    let one_line: String = z.split('\n').collect();
    assert!(Td1::parse(&one_line).is_ok(), "one run of 90");
    assert!(Td1::parse(&z.to_lowercase()).is_ok(), "lower case");
    assert!(Td1::parse(&z.replace('\n', "\r\n ")).is_ok(), "CRLF and spaces");
    for bad in [&z[..60], "", "IDVNM", &z.replace('<', "«")] {
        let e = Td1::parse(bad).expect_err("refused");
        assert!(e.contains("TD1") || e.contains("not allowed"), "{e}");
    }
}

#[test]
fn long_document_numbers_continue_in_the_optional_data() {
    // ICAO 9303 Part 5 §4.2.2 note j: a 12-character number, filler at column 15, the last
    // three characters and their check digit at 16–19.
    let number = "D23145890734";
    let digit = check_digit(number);
    let line1 = format!("I<UTO{}<{}{digit}<<<<<<<<<<<", &number[..9], &number[9..]);
    let line2_head = "3407127M9507122UTO<<<<<<<<<<<";
    let composite = check_digit(&format!(
        "{}{}{}{}",
        &line1[5..30],
        &line2_head[..7],
        &line2_head[8..15],
        &line2_head[18..29]
    ));
    let z = format!("{line1}\n{line2_head}{composite}\nSTEVENSON<<PETER<JOHN<<<<<<<<<");
    let td1 = Td1::parse(&z).expect("parses");
    assert_eq!(td1.failed_check_digits(), Vec::<&str>::new(), "{z}");
}

fn printed<'a>(fields: &'a [(&'a str, Value)]) -> Printed<'a> {
    let get = |name: &str| fields.iter().find(|(n, _)| *n == name).map(|(n, v)| (*n, v));
    Printed {
        id_number: get("/id_number"),
        date_of_birth: get("/date_of_birth"),
        sex: get("/sex"),
        date_of_expiry: get("/date_of_expiry"),
        full_name: get("/full_name"),
    }
}

const CARD: &str =
    "IDVNM0999939080001099993908<<<|9903137M2403133VNM<<<<<<<<<<<9|NGUYEN<<VAN<AN<<<<<<<<<<<<<<<<";

fn statuses(out: &CheckOutcome) -> Vec<(&str, Status)> {
    out.checks
        .iter()
        .map(|c| (c.pointer.as_str(), c.status))
        .collect()
}

#[test]
fn printed_fields_that_agree_pass() {
    let fields = [
        ("/id_number", json!("001099993908")),
        ("/date_of_birth", json!("1999-03-13")),
        ("/sex", json!("Nam")),
        ("/date_of_expiry", json!("2024-03-13")),
        ("/full_name", json!("NGUYỄN VĂN AN")),
    ];
    let out = check("/mrz", &zone(CARD), &printed(&fields), today());
    assert!(
        out.checks.iter().all(|c| c.status == Status::Pass),
        "{:?}",
        out.checks
    );
    assert_eq!(out.checks.len(), 6);
    assert!(out.corrections.is_empty());
}

#[test]
fn a_misread_printed_date_is_corrected_when_the_digits_pass() {
    let fields = [
        ("/id_number", json!("001099993903")),
        ("/date_of_birth", json!("1999-08-13")),
        ("/sex", json!("Nữ")),
        ("/date_of_expiry", json!(null)),
        ("/full_name", json!("Nguyễn Văn Ân Hậu")),
    ];
    let out = check("/mrz", &zone(CARD), &printed(&fields), today());
    assert_eq!(
        statuses(&out),
        vec![
            ("/mrz", Status::Pass),
            ("/id_number", Status::Warn),
            ("/date_of_birth", Status::Warn),
            ("/date_of_expiry", Status::Skipped),
            ("/sex", Status::Fail),
            ("/full_name", Status::Fail),
        ]
    );
    let kept: Vec<(&str, &Value, &Value)> = out
        .corrections
        .iter()
        .map(|c| (c.pointer.as_str(), &c.printed, &c.kept))
        .collect();
    assert_eq!(
        kept,
        vec![
            ("/id_number", &json!("001099993903"), &json!("001099993908")),
            ("/date_of_birth", &json!("1999-08-13"), &json!("1999-03-13")),
        ]
    );
}

#[test]
fn nothing_is_corrected_when_a_check_digit_fails() {
    let broken = CARD.replace("9903137M", "9903187M");
    let fields = [("/date_of_birth", json!("1999-08-13"))];
    let out = check("/mrz", &zone(&broken), &printed(&fields), today());
    assert_eq!(
        statuses(&out),
        vec![("/mrz", Status::Fail), ("/date_of_birth", Status::Fail)]
    );
    assert!(out.corrections.is_empty());
}

#[test]
fn an_unreadable_zone_fails_alone() {
    let fields = [("/date_of_birth", json!("1999-08-13"))];
    let out = check("/mrz", "IDVNM123", &printed(&fields), today());
    assert_eq!(statuses(&out), vec![("/mrz", Status::Fail)]);
}

#[test]
fn without_a_personal_number_the_century_is_the_printed_one_never_corrected() {
    // No personal number in the optional data, born 1925-03-13: the MRZ's digits cannot tell
    // 1925 from 2025, so the printed century is the one compared and kept.
    let line1 = "IDVNM0999939080<<<<<<<<<<<<<<<";
    let line2_head = "2503136M4503130VNM<<<<<<<<<<<";
    let composite = check_digit(&format!(
        "{}{}{}{}",
        &line1[5..30],
        &line2_head[..7],
        &line2_head[8..15],
        &line2_head[18..29]
    ));
    let zone = format!("{line1}\n{line2_head}{composite}\nNGUYEN<<VAN<AN<<<<<<<<<<<<<<<<");
    let td1 = Td1::parse(&zone).expect("parses");
    assert_eq!(td1.personal_number(), None);
    assert_eq!(td1.failed_check_digits(), Vec::<&str>::new());
    let fields = [("/date_of_birth", json!("1925-03-13"))];
    let out = check("/mrz", &zone, &printed(&fields), today());
    assert_eq!(
        statuses(&out),
        vec![("/mrz", Status::Pass), ("/date_of_birth", Status::Pass)]
    );
    let fields = [("/date_of_birth", json!("1925-08-13"))];
    let out = check("/mrz", &zone, &printed(&fields), today());
    assert_eq!(
        out.corrections[0].kept,
        json!("1925-03-13"),
        "the printed century is kept"
    );
}

#[test]
fn a_zone_of_multibyte_characters_is_refused_not_a_panic() {
    let zone = format!("{}Ơ{}", "I".repeat(29), "<".repeat(59));
    assert_eq!(zone.len(), 90);
    assert!(Td1::parse(&zone).is_err());
    let out = check("/mrz", &zone, &Printed::default(), today());
    assert_eq!(statuses(&out), vec![("/mrz", Status::Fail)]);
}

#[test]
fn names_fold_as_an_mrz_writes_them() {
    assert_eq!(fold_name("Nguyễn Văn An"), "NGUYEN VAN AN");
    assert_eq!(fold_name("  ĐẶNG   thị Ngọc-Ánh "), "DANG THI NGOC ANH");
    assert_eq!(fold_name("Bùi Đức Khoa"), "BUI DUC KHOA");
}
