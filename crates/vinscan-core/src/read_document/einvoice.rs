//! An e-invoice XML as a document record, without the model (`crate::einvoice` maps it).

use super::*;

impl Extractor {
    /// An e-invoice XML as its document record, without the model: the values as the XML
    /// gives them (`crate::einvoice`), normalised where that keeps them valid, every leaf of
    /// confidence 1, then the schema's checks and the review rules as for any record.
    ///
    /// # Errors
    /// `Unsupported` when the pipeline's schema is not the invoice schema; `InvalidInput` when
    /// the XML is malformed or a value does not fit the schema (naming the field).
    pub fn extract_einvoice(
        &self,
        source: DocumentSource<'_>,
        pipeline: &Pipeline,
    ) -> Result<DocumentRecord> {
        let started = Instant::now();
        let name = source.doc.name();
        let schema = &pipeline.schema;
        if schema.id() != crate::einvoice::INVOICE_SCHEMA_ID {
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!(
                    "{name}: an e-invoice XML maps to the invoice schema ({}); pipeline {} uses {}",
                    crate::einvoice::INVOICE_SCHEMA_ID,
                    pipeline.name,
                    schema.id()
                ),
            ));
        }
        let parsed = crate::einvoice::invoice_data(source.doc.bytes()).map_err(|e| e.context(name))?;
        let fits = |v: &serde_json::Value| {
            schema
                .violations(v)
                .into_iter()
                .filter(|v| v.keyword != "maxItems")
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
        };
        let mut normalised_data = parsed.clone();
        let changed = schema.normalise(&mut normalised_data);
        let (mut data, normalised) = if fits(&normalised_data).is_empty() {
            (normalised_data, changed)
        } else {
            let problems = fits(&parsed);
            if !problems.is_empty() {
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    format!(
                        "{name}: the e-invoice does not fit {}: {}",
                        schema.path(),
                        problems.into_iter().take(5).collect::<Vec<_>>().join("; ")
                    ),
                ));
            }
            (parsed, Vec::new())
        };
        let text = data.to_string();
        let mut confidence: std::collections::BTreeMap<String, f64> = crate::confidence::leaves(&text)
            .unwrap_or_default()
            .into_iter()
            .map(|(pointer, _)| (pointer, 1.0))
            .collect();
        let checked = run_checks_allowing(
            pipeline,
            &mut data,
            vinscan_schema::today_in_vietnam(chrono::Utc::now()),
            |v| v.keyword == "maxItems",
        );
        carry_confidence(&mut confidence, &checked.corrections);
        let review = pipeline.review.decide(&checked, &confidence);
        let elapsed = started.elapsed().as_secs_f64() * 1e3;
        let provenance = DocumentProvenance {
            record_format: crate::record::RECORD_FORMAT,
            sources: vec![SourceProvenance {
                source: name.to_owned(),
                sha256: source.sha256.to_owned(),
                format: format_name(Format::Xml).to_owned(),
                page_count: 1,
            }],
            pipeline: pipeline.name.clone(),
            pipeline_sha256: pipeline.sha256.clone(),
            schema_id: schema.id().to_owned(),
            schema_sha256: schema.sha256().to_owned(),
            model: None,
            text_model: None,
            vinscan_version: VERSION.to_owned(),
            pages: Vec::new(),
            groups: Vec::new(),
            disagreements: Vec::new(),
            normalised,
            timings_ms: Timings {
                validate: elapsed,
                total: elapsed,
                ..Timings::default()
            },
            transcripts: Vec::new(),
            created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        };
        Ok(DocumentRecord {
            sources: vec![name.to_owned()],
            pages: vec![PageRef {
                source: name.to_owned(),
                page: 1,
            }],
            pipeline: pipeline.name.clone(),
            schema: schema.path().to_owned(),
            data,
            confidence,
            checks: checked.checks,
            corrections: checked.corrections,
            review,
            grounding: Default::default(),
            provenance,
            transcripts: Vec::new(),
        })
    }
}

/// The document's e-invoice XML when it is one; an error when an e-invoice comes with other
/// sources (it is a document by itself).
pub(super) fn einvoice_source<'a>(sources: &[DocumentSource<'a>]) -> Result<Option<DocumentSource<'a>>> {
    if !sources.iter().any(|s| s.doc.format() == Format::Xml) {
        return Ok(None);
    }
    match sources {
        [one] => Ok(Some(*one)),
        _ => Err(Error::new(
            ErrorKind::Unsupported,
            format!(
                "{}: an e-invoice XML is a document by itself and cannot be read with other sources",
                sources
                    .iter()
                    .map(|s| s.doc.name())
                    .collect::<Vec<_>>()
                    .join(" + ")
            ),
        )),
    }
}
