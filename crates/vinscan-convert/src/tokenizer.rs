//! The Qwen2 byte-level BPE tokenizer of a checkpoint (`tokenizer.json`, `tokenizer_config.json`,
//! `chat_template.jinja`) as llama.cpp's GGUF keys: the token list padded to the embedding's row
//! count, token types (added special tokens are CONTROL, other added tokens USER_DEFINED, padding
//! UNUSED), merges, special ids and the chat template.

use std::path::Path;

use serde_json::Value;

use super::ConvertError;
use super::gguf::Value as Kv;
use super::hf::read_json;

const NORMAL: i32 = 1;
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;
const UNUSED: i32 = 5;

pub struct Tokenizer {
    pub metadata: Vec<(&'static str, Kv)>,
}

/// A special token given as a string or as `{"content": ...}`.
fn token_text(v: Option<&Value>) -> Option<&str> {
    match v? {
        Value::String(s) => Some(s),
        Value::Object(o) => o.get("content").and_then(Value::as_str),
        _ => None,
    }
}

fn chat_template(dir: &Path, config: &Value) -> Result<Option<String>, ConvertError> {
    match config.get("chat_template") {
        Some(Value::String(s)) => return Ok(Some(s.clone())),
        Some(Value::Array(named)) => {
            let pick = named
                .iter()
                .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
                .or_else(|| named.first());
            return Ok(pick
                .and_then(|t| t.get("template"))
                .and_then(Value::as_str)
                .map(str::to_owned));
        }
        _ => {}
    }
    let jinja = dir.join("chat_template.jinja");
    if jinja.is_file() {
        return std::fs::read_to_string(&jinja)
            .map(Some)
            .map_err(|e| ConvertError::io(&jinja, e));
    }
    Ok(None)
}

/// The token list padded to `n_vocab` rows (`[PAD{i}]`) and each token's type: the BPE
/// vocabulary NORMAL, added special tokens CONTROL, other added tokens USER_DEFINED, padding
/// UNUSED. `path` names tokenizer.json in errors.
fn vocabulary(
    path: &Path,
    tok: &Value,
    model: &Value,
    n_vocab: usize,
) -> Result<(Vec<String>, Vec<i32>), ConvertError> {
    let mut tokens: Vec<Option<String>> = vec![None; n_vocab];
    let mut types = vec![UNUSED; n_vocab];
    let mut place = |id: u64, text: &str, ty: i32| -> Result<(), ConvertError> {
        let slot = tokens.get_mut(id as usize).ok_or_else(|| {
            ConvertError::Invalid(format!(
                "{}: token {text:?} has id {id} but the model has {n_vocab} embedding rows",
                path.display()
            ))
        })?;
        *slot = Some(text.to_owned());
        types[id as usize] = ty;
        Ok(())
    };
    let vocab = model
        .get("vocab")
        .and_then(Value::as_object)
        .ok_or_else(|| ConvertError::Invalid(format!("{}: model.vocab missing", path.display())))?;
    for (text, id) in vocab {
        let id = id
            .as_u64()
            .ok_or_else(|| ConvertError::Invalid(format!("{}: id of {text:?}", path.display())))?;
        place(id, text, NORMAL)?;
    }
    for added in tok
        .get("added_tokens")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let (Some(id), Some(text)) = (
            added.get("id").and_then(Value::as_u64),
            added.get("content").and_then(Value::as_str),
        ) else {
            continue;
        };
        let special = added.get("special").and_then(Value::as_bool).unwrap_or(false);
        place(id, text, if special { CONTROL } else { USER_DEFINED })?;
    }
    let tokens = tokens
        .into_iter()
        .enumerate()
        .map(|(i, t)| t.unwrap_or_else(|| format!("[PAD{i}]")))
        .collect();
    Ok((tokens, types))
}

/// The BPE merges, written `a b` whether the file has strings or pairs.
fn merges(model: &Value) -> Vec<String> {
    model
        .get("merges")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|m| match m {
            Value::String(s) => Some(s.clone()),
            Value::Array(pair) => {
                let a = pair.first()?.as_str()?;
                let b = pair.get(1)?.as_str()?;
                Some(format!("{a} {b}"))
            }
            _ => None,
        })
        .collect()
}

/// The checkpoint's tokenizer as GGUF metadata for an LLM of `n_vocab` embedding rows.
pub fn read(dir: &Path, n_vocab: usize, model_config: &Value) -> Result<Tokenizer, ConvertError> {
    let path = dir.join("tokenizer.json");
    if !path.is_file() {
        return Err(ConvertError::Invalid(format!(
            "{}: missing (vinscan reads the fast tokenizer's tokenizer.json)",
            path.display()
        )));
    }
    let tok = read_json(&path)?;
    let model = tok
        .get("model")
        .ok_or_else(|| ConvertError::Invalid(format!("{}: no model", path.display())))?;
    let kind = model.get("type").and_then(Value::as_str).unwrap_or("(none)");
    if kind != "BPE" {
        return Err(ConvertError::Unsupported(format!(
            "{}: tokenizer model {kind}; Qwen2 uses byte-level BPE",
            path.display()
        )));
    }
    let (tokens, types) = vocabulary(&path, &tok, model, n_vocab)?;
    let merges = merges(model);

    let config_path = dir.join("tokenizer_config.json");
    let config = if config_path.is_file() {
        read_json(&config_path)?
    } else {
        Value::Null
    };
    let id_of = |text: &str| tokens.iter().position(|t| t == text).map(|i| i as u32);
    let eos = token_text(config.get("eos_token"))
        .and_then(id_of)
        .or_else(|| id_of("<|im_end|>"))
        .ok_or_else(|| {
            ConvertError::Invalid(format!(
                "{}: no eos_token and no <|im_end|> in the vocabulary",
                dir.display()
            ))
        })?;
    let bos = token_text(config.get("bos_token"))
        .and_then(id_of)
        .or_else(|| {
            model_config
                .pointer("/llm_config/bos_token_id")
                .and_then(Value::as_u64)
                .map(|v| v as u32)
        })
        .or_else(|| id_of("<|endoftext|>"));
    let pad = token_text(config.get("pad_token")).and_then(id_of);
    if id_of("<IMG_CONTEXT>").is_none() || id_of("<img>").is_none() || id_of("</img>").is_none() {
        return Err(ConvertError::Invalid(format!(
            "{}: the vocabulary lacks InternVL's image markers <img>, </img>, <IMG_CONTEXT>",
            path.display()
        )));
    }

    let mut metadata = vec![
        ("tokenizer.ggml.model", Kv::Str("gpt2".into())),
        ("tokenizer.ggml.pre", Kv::Str("qwen2".into())),
        ("tokenizer.ggml.tokens", Kv::ArrStr(tokens)),
        ("tokenizer.ggml.token_type", Kv::ArrI32(types)),
        ("tokenizer.ggml.merges", Kv::ArrStr(merges)),
        ("tokenizer.ggml.eos_token_id", Kv::U32(eos)),
        (
            "tokenizer.ggml.add_bos_token",
            Kv::Bool(
                config
                    .get("add_bos_token")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
            ),
        ),
    ];
    if let Some(bos) = bos {
        metadata.push(("tokenizer.ggml.bos_token_id", Kv::U32(bos)));
    }
    if let Some(pad) = pad {
        metadata.push(("tokenizer.ggml.padding_token_id", Kv::U32(pad)));
    }
    if let Some(t) = chat_template(dir, &config)? {
        metadata.push(("tokenizer.chat_template", Kv::Str(t)));
    }
    Ok(Tokenizer { metadata })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_vocabulary_is_padded_and_typed() {
        let tok = json!({
            "model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": ["a b", ["b", "a"]]},
            "added_tokens": [{"id": 2, "content": "<|im_end|>", "special": true},
                {"id": 3, "content": "<img>", "special": false}]
        });
        let (tokens, types) =
            vocabulary(Path::new("tokenizer.json"), &tok, &tok["model"], 5).expect("vocabulary");
        assert_eq!(tokens, ["a", "b", "<|im_end|>", "<img>", "[PAD4]"]);
        assert_eq!(types, [NORMAL, NORMAL, CONTROL, USER_DEFINED, UNUSED]);
        assert_eq!(merges(&tok["model"]), ["a b", "b a"]);
        let e = vocabulary(Path::new("tokenizer.json"), &tok, &tok["model"], 3)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("has id 3 but the model has 3 embedding rows"), "{e}");
    }
}
