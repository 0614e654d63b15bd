#!/usr/bin/env python3
"""Independent check of vinscan outputs with Python's `jsonschema` (Draft 2020-12).

usage: validate_outputs.py REPO_ROOT FILE...
Each FILE is JSON Lines or a single JSON object (a page record, a document record, or a daemon
job output holding page records under `pages` or one document record under `document`).
Every record's `data` must
validate against the schema file its `schema` field names (a path relative to REPO_ROOT); every
check result must be well formed with a JSON Pointer that resolves in `data`; every correction
must be what `data` holds; and `confidence` must cover exactly the leaves of `data` (the tests'
records all come from llama.cpp, which reports token probabilities, or from e-invoice XML, whose
values have confidence 1). A document record read in several page groups, or from an e-invoice
(no read), may hold more array items than `maxItems` (the schema bounds one read); every other
keyword holds. `grounding`, present where the pipeline makes transcripts, must point at strings
of `data` and locate only what it found.
Prints one line per failure and a closing 'N passed, M failed'; exits 1 on any failure.
"""
import json
import os
import sys

from jsonschema import Draft202012Validator


def records(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if path.endswith(".jsonl"):
        docs = [json.loads(line) for line in text.splitlines() if line.strip()]
    else:
        docs = [json.loads(text)]
    out = []
    for d in docs:
        if "job_id" in d:
            # a daemon job output: page records under "pages", or one document record
            out.extend(d.get("pages") or [])
            if d.get("document") is not None:
                out.append(d["document"])
        else:
            out.append(d)
    return out


PAGE_KEYS = {"source", "page", "pipeline", "schema", "data", "confidence", "checks", "corrections", "review",
             "provenance"}
DOCUMENT_KEYS = {"sources", "pages", "pipeline", "schema", "data", "confidence", "checks", "corrections", "review",
                 "provenance"}


# present only where the pipeline makes transcripts
OPTIONAL_KEYS = {"grounding"}

STATUSES = {"pass", "fail", "warn", "skipped"}


def grounding_problems(rec):
    """`grounding`, when present: each key a JSON Pointer to a string of data; each value
    {found, score in [0, 1]}, a found one with its source and page (and maybe a box), a value
    not found with neither."""
    grounding = rec.get("grounding")
    if grounding is None:
        return []
    if not isinstance(grounding, dict) or not grounding:
        return ["grounding is not a non-empty object"]
    problems = []
    for pointer, g in grounding.items():
        try:
            value = resolve(rec["data"], pointer)
        except (KeyError, IndexError, ValueError, TypeError):
            problems.append(f"grounding of {pointer!r}, not in data")
            continue
        if not isinstance(value, str):
            problems.append(f"grounding of {pointer!r}, which is not a string")
        if not isinstance(g, dict) or not isinstance(g.get("found"), bool) \
                or not isinstance(g.get("score"), (int, float)) or not 0 <= g["score"] <= 1:
            problems.append(f"malformed grounding {g}")
            continue
        located = {"source", "page", "bbox"} & set(g)
        if g["found"]:
            if not isinstance(g.get("source"), str) or not isinstance(g.get("page"), int) or g["page"] < 1:
                problems.append(f"grounding of {pointer!r} found without its source and page")
            box = g.get("bbox")
            if box is not None and not (isinstance(box, list) and len(box) == 4
                                        and all(isinstance(v, int) and v >= 0 for v in box)
                                        and box[0] <= box[2] and box[1] <= box[3]):
                problems.append(f"grounding of {pointer!r} has a malformed box {box}")
        elif located:
            problems.append(f"grounding of {pointer!r} not found but located: {sorted(located)}")
    return problems


def resolve(doc, pointer):
    """RFC 6901: the value at `pointer` in `doc`, or raise KeyError/IndexError."""
    if pointer == "":
        return doc
    for token in pointer[1:].split("/"):
        token = token.replace("~1", "/").replace("~0", "~")
        doc = doc[int(token)] if isinstance(doc, list) else doc[token]
    return doc


def leaves(doc, pointer=""):
    """JSON Pointers of every leaf of `doc` (a scalar, an empty object or an empty array)."""
    if isinstance(doc, dict) and doc:
        for k, v in doc.items():
            yield from leaves(v, pointer + "/" + k.replace("~", "~0").replace("/", "~1"))
    elif isinstance(doc, list) and doc:
        for i, v in enumerate(doc):
            yield from leaves(v, f"{pointer}/{i}")
    else:
        yield pointer


def check_problems(rec):
    problems = []
    confidence = rec.get("confidence")
    if not isinstance(confidence, dict) or not confidence:
        problems.append("no confidence per field")
    else:
        missing = set(leaves(rec["data"])) ^ set(confidence)
        if missing:
            problems.append(f"confidence keys differ from the leaves of data: {sorted(missing)[:5]}")
        if any(not (isinstance(c, (int, float)) and 0 <= c <= 1) for c in confidence.values()):
            problems.append("a confidence outside [0, 1]")
    checks = rec.get("checks")
    if not isinstance(checks, list) or not isinstance(rec.get("corrections"), list):
        return ["checks or corrections is not an array"]
    for c in checks:
        if set(c) != {"pointer", "check", "status", "detail"} or c["status"] not in STATUSES:
            problems.append(f"malformed check result {c}")
            continue
        try:
            resolve(rec["data"], c["pointer"])
        except (KeyError, IndexError, ValueError, TypeError):
            problems.append(f"check {c['check']} points at {c['pointer']!r}, not in data")
    review = rec.get("review")
    if not isinstance(review, dict) or set(review) != {"needed", "reasons"}:
        problems.append(f"malformed review {review}")
    elif review["needed"] != bool(review["reasons"]):
        problems.append("review.needed disagrees with its reasons")
    for c in rec["corrections"]:
        if resolve(rec["data"], c["pointer"]) != c["kept"]:
            problems.append(f"correction at {c['pointer']} is not what data holds")
    return problems + grounding_problems(rec)


def main():
    root, files = sys.argv[1], sys.argv[2:]
    validators, passed, failed = {}, 0, 0
    for path in files:
        for rec in records(path):
            schema_path = rec.get("schema")
            if schema_path not in validators:
                with open(os.path.join(root, schema_path), encoding="utf-8") as f:
                    schema = json.load(f)
                Draft202012Validator.check_schema(schema)
                validators[schema_path] = Draft202012Validator(schema)
            document = "sources" in rec
            # maxItems bounds one read: a merged record (several reads) or an e-invoice (none)
            # may hold more
            merged = document and len(rec["provenance"]["groups"]) != 1
            errors = [e.message for e in validators[schema_path].iter_errors(rec["data"])
                      if not (merged and e.validator == "maxItems")]
            errors += check_problems(rec)
            keys = DOCUMENT_KEYS if document else PAGE_KEYS
            if errors or set(rec) - OPTIONAL_KEYS != keys:
                failed += 1
                why = errors[0] if errors else f"record keys {sorted(rec)}"
                where = " + ".join(rec["sources"]) if document else f"{rec.get('source')} page {rec.get('page')}"
                print(f"FAIL {where}: {why}")
            else:
                passed += 1
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed or not passed else 0)


if __name__ == "__main__":
    main()
