//! MQTT payloads into signal values, by a configured field layout (JSON or CBOR). Pure; never
//! panics on input: a payload that does not parse is an error, a missing or non-numeric field
//! is skipped and counted.

use crate::config::{Layout, PayloadFormat};

/// MQTT topic filter match (`+` one level, `#` the rest), as brokers do it.
pub fn topic_matches(filter: &str, topic: &str) -> bool {
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Signals read from one payload, and how many configured fields were absent or not numbers.
#[derive(Debug, Default, PartialEq)]
pub struct Extracted {
    pub values: Vec<(usize, f64)>,
    pub missing: u64,
}

/// Extracts `layout`'s fields from `payload`; the `usize` is the field's index in
/// `layout.fields`.
pub fn extract(layout: &Layout, payload: &[u8]) -> Result<Extracted, String> {
    let mut out = Extracted::default();
    match layout.format {
        PayloadFormat::Json => {
            let v: serde_json::Value =
                serde_json::from_slice(payload).map_err(|e| format!("not JSON: {e}"))?;
            for (i, (_, path)) in layout.fields.iter().enumerate() {
                let mut cur = Some(&v);
                for p in path {
                    cur = cur.and_then(|c| c.get(p.as_str()));
                }
                match cur.and_then(json_number) {
                    Some(x) => out.values.push((i, x)),
                    None => out.missing += 1,
                }
            }
        }
        PayloadFormat::Cbor => {
            let v: ciborium::Value =
                ciborium::from_reader(payload).map_err(|e| format!("not CBOR: {e}"))?;
            for (i, (_, path)) in layout.fields.iter().enumerate() {
                let mut cur = Some(&v);
                for p in path {
                    cur = cur.and_then(|c| cbor_get(c, p));
                }
                match cur.and_then(cbor_number) {
                    Some(x) => out.values.push((i, x)),
                    None => out.missing += 1,
                }
            }
        }
    }
    Ok(out)
}

fn json_number(v: &serde_json::Value) -> Option<f64> {
    match v {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::Bool(b) => Some(f64::from(u8::from(*b))),
        _ => None,
    }
}

fn cbor_get<'a>(v: &'a ciborium::Value, key: &str) -> Option<&'a ciborium::Value> {
    match v {
        ciborium::Value::Map(entries) => entries
            .iter()
            .find(|(k, _)| matches!(k, ciborium::Value::Text(t) if t == key))
            .map(|(_, v)| v),
        _ => None,
    }
}

fn cbor_number(v: &ciborium::Value) -> Option<f64> {
    match v {
        ciborium::Value::Integer(i) => {
            let i: i128 = (*i).into();
            Some(i as f64)
        }
        ciborium::Value::Float(f) => Some(*f),
        ciborium::Value::Bool(b) => Some(f64::from(u8::from(*b))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(format: PayloadFormat) -> Layout {
        Layout {
            topic: "v/+/t".into(),
            format,
            fields: vec![
                ("t.speed".into(), vec!["speed".into()]),
                ("t.lat".into(), vec!["pos".into(), "lat".into()]),
            ],
        }
    }

    #[test]
    fn topic_filters_match_like_a_broker() {
        assert!(topic_matches("v/+/t", "v/42/t"));
        assert!(!topic_matches("v/+/t", "v/42/x"));
        assert!(!topic_matches("v/+/t", "v/42/t/x"));
        assert!(topic_matches("v/#", "v/42/t/x"));
        assert!(topic_matches("#", "a"));
        assert!(topic_matches("a/b", "a/b"));
        assert!(!topic_matches("a/b", "a"));
    }

    #[test]
    fn json_fields_are_read_by_path_and_missing_ones_counted() {
        let l = layout(PayloadFormat::Json);
        let got = extract(&l, br#"{"speed": 12.5, "pos": {"lon": 1}}"#).expect("extracts");
        assert_eq!(got, Extracted { values: vec![(0, 12.5)], missing: 1 });
        let got = extract(&l, br#"{"speed": "fast", "pos": {"lat": 48.1}}"#).expect("extracts");
        assert_eq!(got, Extracted { values: vec![(1, 48.1)], missing: 1 });
        assert!(extract(&l, b"\xff not json").expect_err("not JSON").starts_with("not JSON"));
    }

    #[test]
    fn cbor_fields_are_read_by_path() {
        use ciborium::Value as V;
        let l = layout(PayloadFormat::Cbor);
        let v = V::Map(vec![
            (V::Text("speed".into()), V::Integer(30.into())),
            (V::Text("pos".into()), V::Map(vec![(V::Text("lat".into()), V::Float(48.5))])),
        ]);
        let mut buf = Vec::new();
        ciborium::into_writer(&v, &mut buf).expect("encodes");
        assert_eq!(
            extract(&l, &buf).expect("extracts"),
            Extracted { values: vec![(0, 30.0), (1, 48.5)], missing: 0 }
        );
        assert!(extract(&l, &[0xff, 0x00]).is_err());
    }
}
