//! Vietnamese e-invoices without the model: the tax authority's XML mapped straight to the
//! invoice schema, every value exact (confidence 1).
//!
//! The format is the one Decree 123/2020/NĐ-CP and Circular 78/2021/TT-BTC require, with the
//! element names of the General Department of Taxation's XML standard (Decision 1450/QĐ-TCT):
//!
//! ```text
//! HDon / DLHDon / TTChung   KHMSHDon (form), KHHDon (series), SHDon (number), NLap (date),
//!                           HTTToan (payment), DVTTe (currency)
//!               / NDHDon / NBan, NMua     Ten, MST, DChi, SDThoai, STKNHang
//!                        / DSHHDVu / HHDVu   THHDVu, DVTinh, SLuong, DGia, ThTien, TSuat
//!                        / TToan          THTTLTSuat / LTSuat / TSuat, TgTCThue, TgTThue,
//!                                         TgTTTBSo, TgTTTBChu
//!      / MCCQT (the tax authority's code: what the invoice is looked up by)
//! ```
//!
//! Elements are matched by local name (any namespace). A line whose `TChat` (nature) is not 1
//! (goods or service) — a discount, a note, a promotion — is not a line item. DTDs are refused
//! (roxmltree's default), so no entity can expand.

use roxmltree::Node;
use serde_json::{Map, Value, json};

use crate::error::{Error, ErrorKind, Result};

/// The `$id` of the schema e-invoices map to (`schemas/invoice.schema.json`).
pub const INVOICE_SCHEMA_ID: &str = "urn:vinscan:schema:invoice:1";

/// Whether `bytes` are an XML document whose root element is `HDon` (an e-invoice): a UTF-8
/// BOM, the XML declaration, comments and processing instructions may come first.
pub fn is_einvoice(bytes: &[u8]) -> bool {
    let head = &bytes[..bytes.len().min(4096)];
    let text = String::from_utf8_lossy(head);
    let mut rest = text.trim_start_matches('\u{feff}').trim_start();
    loop {
        if let Some(after) = rest.strip_prefix("<?") {
            let Some(end) = after.find("?>") else { return false };
            rest = after[end + 2..].trim_start();
        } else if let Some(after) = rest.strip_prefix("<!--") {
            let Some(end) = after.find("-->") else {
                return false;
            };
            rest = after[end + 3..].trim_start();
        } else if let Some(after) = rest.strip_prefix('<') {
            let name: String = after
                .chars()
                .take_while(|c| !c.is_whitespace() && *c != '>' && *c != '/')
                .collect();
            let local = name.rsplit(':').next().unwrap_or_default();
            return local == "HDon";
        } else {
            return false;
        }
    }
}

/// The invoice schema's `data` for an e-invoice, before normalisation and validation.
///
/// # Errors
/// `InvalidInput` when the bytes are not well-formed UTF-8 XML, the root is not `HDon`, or a
/// number is not a number; each message names the element.
pub fn invoice_data(bytes: &[u8]) -> Result<Value> {
    let invalid = |m: String| Error::new(ErrorKind::InvalidInput, m);
    let text = std::str::from_utf8(bytes).map_err(|e| invalid(format!("e-invoice XML is not UTF-8: {e}")))?;
    let text = text.trim_start_matches('\u{feff}');
    let doc = roxmltree::Document::parse(text).map_err(|e| invalid(format!("e-invoice XML: {e}")))?;
    let root = doc.root_element();
    if root.tag_name().name() != "HDon" {
        return Err(invalid(format!(
            "e-invoice XML: the root element is <{}>, not <HDon>",
            root.tag_name().name()
        )));
    }
    let body = child(root, "DLHDon").ok_or_else(|| invalid("e-invoice XML: no <DLHDon>".into()))?;
    let general = child(body, "TTChung");
    let content = child(body, "NDHDon");
    let totals = content.and_then(|c| child(c, "TToan"));
    let party = |name: &str| {
        let p = content.and_then(|c| child(c, name));
        json!({
            "name": text_at(p, &["Ten"]),
            "tax_code": text_at(p, &["MST"]),
            "address": text_at(p, &["DChi"]),
            "phone": text_at(p, &["SDThoai"]),
            "bank_account": text_at(p, &["STKNHang"]),
        })
    };
    let mut items = Vec::new();
    if let Some(list) = content.and_then(|c| child(c, "DSHHDVu")) {
        for line in list.children().filter(|n| n.has_tag_name("HHDVu")) {
            let nature = text_at(Some(line), &["TChat"]);
            if nature.as_deref().is_some_and(|t| t != "1") {
                continue;
            }
            items.push(json!({
                "description": text_at(Some(line), &["THHDVu"]),
                "unit": text_at(Some(line), &["DVTinh"]),
                "quantity": number_at(Some(line), "SLuong")?,
                "unit_price": number_at(Some(line), "DGia")?,
                "amount": amount_at(Some(line), "ThTien")?,
                "vat_rate": vat_rate(text_at(Some(line), &["TSuat"]).as_deref()),
            }));
        }
    }
    // the invoice's rate: the one rate of its VAT summary, when there is exactly one
    let rates: Vec<String> = totals
        .and_then(|t| child(t, "THTTLTSuat"))
        .map(|s| {
            s.children()
                .filter(|n| n.has_tag_name("LTSuat"))
                .filter_map(|r| text_at(Some(r), &["TSuat"]))
                .collect()
        })
        .unwrap_or_default();
    let invoice_rate = match rates.as_slice() {
        [one] => vat_rate(Some(one)),
        _ => Value::Null,
    };
    let currency = match text_at(general, &["DVTTe"]).as_deref() {
        Some(c @ ("VND" | "USD" | "EUR" | "JPY" | "CNY" | "KRW")) => json!(c),
        _ => Value::Null,
    };
    let mut data = Map::new();
    data.insert("invoice_form".into(), json!(text_at(general, &["KHMSHDon"])));
    data.insert("invoice_series".into(), json!(text_at(general, &["KHHDon"])));
    data.insert("invoice_number".into(), json!(text_at(general, &["SHDon"])));
    data.insert("issue_date".into(), json!(text_at(general, &["NLap"])));
    data.insert("lookup_code".into(), json!(text_at(Some(root), &["MCCQT"])));
    data.insert("seller".into(), party("NBan"));
    data.insert("buyer".into(), party("NMua"));
    data.insert("payment_method".into(), json!(text_at(general, &["HTTToan"])));
    data.insert("items".into(), Value::Array(items));
    data.insert("subtotal".into(), amount_at(totals, "TgTCThue")?);
    data.insert("vat_rate".into(), invoice_rate);
    data.insert("vat_amount".into(), amount_at(totals, "TgTThue")?);
    data.insert("total".into(), amount_at(totals, "TgTTTBSo")?);
    data.insert("total_in_words".into(), json!(text_at(totals, &["TgTTTBChu"])));
    data.insert("currency".into(), currency);
    Ok(Value::Object(data))
}

/// The first child element of `node` with local name `name`.
fn child<'a, 'i>(node: Node<'a, 'i>, name: &str) -> Option<Node<'a, 'i>> {
    node.children()
        .find(|n| n.is_element() && n.tag_name().name() == name)
}

/// The trimmed text at `path` under `node`; `None` when absent or empty.
fn text_at(node: Option<Node<'_, '_>>, path: &[&str]) -> Option<String> {
    let mut n = node?;
    for name in path {
        n = child(n, name)?;
    }
    let t = n.text()?.trim();
    (!t.is_empty()).then(|| t.to_owned())
}

fn parse_number(node: Option<Node<'_, '_>>, name: &str) -> Result<Option<f64>> {
    let Some(t) = text_at(node, &[name]) else {
        return Ok(None);
    };
    t.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .map(Some)
        .ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidInput,
                format!("e-invoice XML: <{name}> is {t:?}, not a number"),
            )
        })
}

/// A quantity or price: the number as written (decimals kept).
fn number_at(node: Option<Node<'_, '_>>, name: &str) -> Result<Value> {
    Ok(parse_number(node, name)?.map_or(Value::Null, |v| {
        if v.fract() == 0.0 && v.abs() < 1e15 {
            json!(v as i64)
        } else {
            json!(v)
        }
    }))
}

/// The largest amount kept exactly: 2^53, where an f64 stops holding every whole number.
const MAX_EXACT: f64 = 9_007_199_254_740_992.0;

/// An amount in the invoice's currency as the schema keeps it: whole units (VND has none
/// smaller). A fractional amount (a foreign-currency invoice in cents) or one past 2^53 is an
/// error naming the element: rounding it would make an exact value inexact.
fn amount_at(node: Option<Node<'_, '_>>, name: &str) -> Result<Value> {
    let Some(v) = parse_number(node, name)? else {
        return Ok(Value::Null);
    };
    if v.fract() != 0.0 || v.abs() > MAX_EXACT {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "e-invoice XML: <{name}> is {}, not a whole amount the invoice schema can keep exactly",
                text_at(node, &[name]).unwrap_or_default()
            ),
        ));
    }
    Ok(json!(v as i64))
}

/// `TSuat` as the schema's enum: `10%`, `8%`, `5%`, `0%`, `KCT` (not subject), `KKKNT` (not
/// declared); anything else (`KHAC:…`, another percentage) is null.
fn vat_rate(t: Option<&str>) -> Value {
    match t.map(|t| t.trim().to_ascii_uppercase()) {
        Some(r) if ["0%", "5%", "8%", "10%", "KCT", "KKKNT"].contains(&r.as_str()) => json!(r),
        _ => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = include_str!("../../../tests/fixtures/einvoice/hoadon-gtgt.xml");

    #[test]
    fn an_einvoice_is_recognised_by_its_root_element() {
        assert!(is_einvoice(SAMPLE.as_bytes()));
        assert!(is_einvoice(
            b"\xef\xbb\xbf<?xml version=\"1.0\"?>\n<!-- x --><HDon><DLHDon/></HDon>"
        ));
        assert!(is_einvoice(b"<inv:HDon xmlns:inv=\"urn:x\"/>"));
        assert!(!is_einvoice(b"<?xml version=\"1.0\"?><TDiep/>"));
        assert!(!is_einvoice(b"%PDF-1.7"));
        assert!(!is_einvoice(b"<?xml never closed"));
    }

    #[test]
    fn the_sample_maps_to_exact_values() {
        let d = invoice_data(SAMPLE.as_bytes()).expect("maps");
        assert_eq!(d["invoice_form"], json!("1"));
        assert_eq!(d["invoice_series"], json!("C26TVS"));
        assert_eq!(d["invoice_number"], json!("00000123"));
        assert_eq!(d["issue_date"], json!("2026-03-15"));
        assert_eq!(d["seller"]["tax_code"], json!("0100109106"));
        assert_eq!(d["buyer"]["name"], json!("CÔNG TY CỔ PHẦN MẪU SỐ MỘT"));
        let items = d["items"].as_array().expect("items");
        assert_eq!(items.len(), 2, "the note line (TChat 4) is not a line item");
        assert_eq!(items[0]["quantity"], json!(2));
        assert_eq!(items[1]["quantity"], json!(1.5));
        assert_eq!(items[1]["amount"], json!(300000));
        assert_eq!(items[0]["vat_rate"], json!("10%"));
        assert_eq!(
            (d["subtotal"].clone(), d["vat_amount"].clone(), d["total"].clone()),
            (json!(500000), json!(50000), json!(550000))
        );
        assert_eq!(d["vat_rate"], json!("10%"));
        assert_eq!(d["currency"], json!("VND"));
        assert_eq!(d["lookup_code"], json!("00A1B2C3D4E5F60718293A4B5C6D7E8F90"));
    }

    #[test]
    fn malformed_einvoices_are_clear_errors() {
        for (bytes, needle) in [
            (&b"<HDon><DLHDon>"[..], "e-invoice XML"),
            (&b"<Other/>"[..], "not <HDon>"),
            (&b"<HDon/>"[..], "no <DLHDon>"),
            (&b"\xff\xfe<HDon/>"[..], "not UTF-8"),
            (
                &b"<HDon><DLHDon><NDHDon><TToan><TgTTTBSo>many</TgTTTBSo></TToan></NDHDon></DLHDon></HDon>"[..],
                "<TgTTTBSo> is \"many\"",
            ),
            (
                &b"<!DOCTYPE HDon [<!ENTITY a \"aaaa\">]><HDon><DLHDon/></HDon>"[..],
                "e-invoice XML",
            ),
            (
                &b"<HDon><DLHDon><NDHDon><TToan><TgTTTBSo>123.45</TgTTTBSo></TToan></NDHDon></DLHDon></HDon>"
                    [..],
                "<TgTTTBSo> is 123.45, not a whole amount",
            ),
            (
                &b"<HDon><DLHDon><NDHDon><TToan><TgTThue>1e20</TgTThue></TToan></NDHDon></DLHDon></HDon>"[..],
                "<TgTThue> is 1e20",
            ),
        ] {
            let e = invoice_data(bytes).expect_err(needle);
            assert_eq!(e.kind(), ErrorKind::InvalidInput);
            assert!(e.to_string().contains(needle), "{e}");
        }
    }
}
