//! Flume's `AvroSourceProtocol` as text, the hashes that name it, and the check that
//! decides whether some other client's protocol text is close enough to serve.
//!
//! The handshake names a protocol by the MD5 of its JSON rendering, and that rendering
//! differs between Avro releases (the IDL's licence comment becomes the protocol's `doc`,
//! cleaned differently by different compilers; Python drops `doc` and uses other
//! separators). So the same protocol has several hashes. Millrace presents the JSON
//! every released Flume (1.6 to 1.11.0) presents, byte for byte, and treats the four
//! known renderings as known clients; any other text is parsed and accepted when its
//! `append`/`appendBatch` messages have Flume's layout (`docs/avro.md` §4).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use serde_json::{Map, Value};
use thiserror::Error;

use crate::handshake::Md5Hash;

/// The protocol JSON of every released Flume from 1.6 to 1.11.0 (Avro 1.7.4 to 1.11.0
/// compile `flume.avdl` to this), exactly: one line, no trailing newline, 1,334 bytes.
/// Its `doc` is the licence comment with each line's leading `" * "` kept.
pub const FLUME_PROTOCOL_JSON: &str = concat!(
    r#"{"protocol":"AvroSourceProtocol","namespace":"org.apache.flume.source.avro","doc":"#,
    r#""* Licensed to the Apache Software Foundation (ASF) under one\n"#,
    r#" * or more contributor license agreements.  See the NOTICE file\n"#,
    r#" * distributed with this work for additional information\n"#,
    r#" * regarding copyright ownership.  The ASF licenses this file\n"#,
    r#" * to you under the Apache License, Version 2.0 (the\n"#,
    r#" * \"License\"); you may not use this file except in compliance\n"#,
    r#" * with the License.  You may obtain a copy of the License at\n"#,
    r#" *\n"#,
    r#" * http://www.apache.org/licenses/LICENSE-2.0\n"#,
    r#" *\n"#,
    r#" * Unless required by applicable law or agreed to in writing,\n"#,
    r#" * software distributed under the License is distributed on an\n"#,
    r#" * \"AS IS\" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY\n"#,
    r#" * KIND, either express or implied.  See the License for the\n"#,
    r#" * specific language governing permissions and limitations\n"#,
    r#" * under the License.","#,
    r#""types":[{"type":"enum","name":"Status","symbols":["OK","FAILED","UNKNOWN"]},"#,
    r#"{"type":"record","name":"AvroFlumeEvent","fields":[{"name":"headers","type":{"type":"map","values":"string"}},"#,
    r#"{"name":"body","type":"bytes"}]}],"#,
    r#""messages":{"append":{"request":[{"name":"event","type":"AvroFlumeEvent"}],"response":"Status"},"#,
    r#""appendBatch":{"request":[{"name":"events","type":{"type":"array","items":"AvroFlumeEvent"}}],"response":"Status"}}}"#,
);

/// The MD5 of [`FLUME_PROTOCOL_JSON`]: the hash Millrace presents as its own, and the
/// one its sink sends, as released Flume agents do.
pub const FLUME_PROTOCOL_MD5: Md5Hash = match Md5Hash::from_hex("86aadae2c45474c0fe93ffd0f2350a65")
{
    Some(hash) => hash,
    None => panic!("a valid hex hash"),
};

/// A rendering of Flume's protocol whose hash is known to name a compatible client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownProtocol {
    /// The hash.
    pub md5: Md5Hash,
    /// Which clients present it.
    pub presented_by: &'static str,
}

const fn known(hex: &str, presented_by: &'static str) -> KnownProtocol {
    match Md5Hash::from_hex(hex) {
        Some(md5) => KnownProtocol { md5, presented_by },
        None => panic!("a valid hex hash"),
    }
}

/// The four renderings of Flume's protocol seen in the field, pre-seeded in every
/// [`ClientProtocolCache`] so that these clients need no second round trip.
pub const KNOWN_COMPATIBLE_PROTOCOLS: [KnownProtocol; 4] = [
    known(
        "86aadae2c45474c0fe93ffd0f2350a65",
        "released Flume 1.6 to 1.11.0 (Avro 1.7.4 to 1.11.0): the licence doc with ' * ' prefixes",
    ),
    known(
        "8076c53714e01f6e2c1deb9544e7b1fe",
        "Flume built from its development line (Avro 1.11.1 and later): the doc without prefixes",
    ),
    known(
        "30da54059df72d9584b867d5202e2069",
        "the same JSON without a doc",
    ),
    known(
        "707cba5ff90563725bf99ecb99ba0028",
        "Apache Avro's Python implementation (drops doc, json.dumps separators)",
    ),
];

/// Default for how many protocol hashes beyond the known four a server remembers as
/// compatible. Every client build with its own rendering adds one; the cap keeps hostile
/// clients from growing the cache without bound (past it, a client still gets served, it
/// just needs the two-round-trip handshake on each new connection).
pub const DEFAULT_MAX_LEARNED_CLIENT_PROTOCOLS: usize = 256;

/// The client protocol hashes a server knows to be compatible, shared by all the
/// connections of one endpoint (as Java's `Responder` shares its cache). Thread-safe.
#[derive(Debug)]
pub struct ClientProtocolCache {
    learned: Mutex<HashSet<Md5Hash>>,
    max_learned: usize,
}

impl ClientProtocolCache {
    /// A cache holding the known hashes and room for `max_learned` more.
    pub fn new(max_learned: usize) -> Self {
        ClientProtocolCache {
            learned: Mutex::new(HashSet::new()),
            max_learned,
        }
    }

    /// Whether `hash` names a protocol known to be compatible.
    pub fn contains(&self, hash: &Md5Hash) -> bool {
        KNOWN_COMPATIBLE_PROTOCOLS
            .iter()
            .any(|known| known.md5 == *hash)
            || self.lock().contains(hash)
    }

    /// Remembers `hash` as compatible; false when the cache is full and it was not stored.
    pub fn learn(&self, hash: Md5Hash) -> bool {
        if self.contains(&hash) {
            return true;
        }
        let mut learned = self.lock();
        if learned.len() >= self.max_learned {
            return false;
        }
        learned.insert(hash)
    }

    /// How many hashes were learned (the known four not counted).
    pub fn learned_count(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<Md5Hash>> {
        // The set is valid whatever a panicking holder did (inserts are atomic).
        self.learned
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Default for ClientProtocolCache {
    fn default() -> Self {
        ClientProtocolCache::new(DEFAULT_MAX_LEARNED_CLIENT_PROTOCOLS)
    }
}

/// Why a protocol text cannot be served as Flume's.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum IncompatibleProtocol {
    /// The text is not JSON.
    #[error("the protocol text is not JSON: {problem}")]
    NotJson {
        /// serde_json's message.
        problem: String,
    },
    /// The JSON is not an Avro protocol (no `messages` object).
    #[error("the protocol text is not an Avro protocol: {problem}")]
    NotAProtocol {
        /// What is missing.
        problem: String,
    },
    /// The protocol has neither `append` nor `appendBatch`.
    #[error("protocol {protocol} has neither an append nor an appendBatch message")]
    NoFlumeMessage {
        /// The protocol's name.
        protocol: String,
    },
    /// A message named like Flume's has another layout.
    #[error("protocol {protocol}: message {message} is not Flume's: {problem}")]
    MessageMismatch {
        /// The protocol's name.
        protocol: String,
        /// `append` or `appendBatch`.
        message: &'static str,
        /// What differs.
        problem: String,
    },
}

/// How deep named-type references may nest before the check gives up (Flume's protocol
/// needs 3).
const MAX_SCHEMA_DEPTH: usize = 32;

/// Checks that a protocol text (a client's `clientProtocol`, a server's `serverProtocol`)
/// lays out Flume's messages as Flume does: every `append`/`appendBatch` it has takes one
/// `AvroFlumeEvent` / array of them (a record of `headers: map<string>` then `body:
/// bytes`), answers an enum with the symbols `OK` and `FAILED`, and is not one-way; at
/// least one of the two is present. Names of parameters, records and namespaces, docs,
/// declared errors and other messages do not matter: they do not change the bytes.
pub fn check_protocol_compatible(text: &str) -> Result<(), IncompatibleProtocol> {
    let json: Value =
        serde_json::from_str(text).map_err(|error| IncompatibleProtocol::NotJson {
            problem: error.to_string(),
        })?;
    let not_a_protocol = |problem: &str| IncompatibleProtocol::NotAProtocol {
        problem: problem.to_string(),
    };
    let root = json
        .as_object()
        .ok_or_else(|| not_a_protocol("it is not a JSON object"))?;
    let protocol = root
        .get("protocol")
        .and_then(Value::as_str)
        .ok_or_else(|| not_a_protocol("it has no \"protocol\" name"))?
        .to_string();
    let namespace = root.get("namespace").and_then(Value::as_str).unwrap_or("");
    let messages = root
        .get("messages")
        .and_then(Value::as_object)
        .ok_or_else(|| not_a_protocol("it has no \"messages\" object"))?;
    let mut names = NamedTypes::default();
    if let Some(types) = root.get("types").and_then(Value::as_array) {
        for schema in types {
            names.collect(schema, namespace, 0);
        }
    }
    for message in messages.values().filter_map(Value::as_object) {
        for key in ["request", "response"] {
            if let Some(Value::Array(params)) = message.get(key) {
                for param in params {
                    if let Some(schema) = param.get("type") {
                        names.collect(schema, namespace, 0);
                    }
                }
            } else if let Some(schema) = message.get(key) {
                names.collect(schema, namespace, 0);
            }
        }
    }
    let checker = Checker { names: &names };
    let mut found_any = false;
    for (message, wants_batch) in [("append", false), ("appendBatch", true)] {
        let Some(definition) = messages.get(message) else {
            continue;
        };
        found_any = true;
        checker
            .check_message(definition, namespace, wants_batch)
            .map_err(|problem| IncompatibleProtocol::MessageMismatch {
                protocol: protocol.clone(),
                message,
                problem,
            })?;
    }
    if !found_any {
        return Err(IncompatibleProtocol::NoFlumeMessage { protocol });
    }
    Ok(())
}

const PRIMITIVES: [&str; 8] = [
    "null", "boolean", "int", "long", "float", "double", "bytes", "string",
];
const NAMED_KINDS: [&str; 4] = ["record", "error", "enum", "fixed"];

/// Named types of a protocol by full name, with the namespace their own references
/// resolve in.
#[derive(Default)]
struct NamedTypes<'v> {
    by_full_name: HashMap<String, (&'v Value, String)>,
}

fn full_name(name: &str, namespace: &str) -> String {
    if name.contains('.') || namespace.is_empty() {
        name.to_string()
    } else {
        format!("{namespace}.{name}")
    }
}

/// The namespace a named type's definition sets for its own contents.
fn own_namespace(definition: &Map<String, Value>, enclosing: &str) -> String {
    let name = definition.get("name").and_then(Value::as_str).unwrap_or("");
    match (
        name.rsplit_once('.'),
        definition.get("namespace").and_then(Value::as_str),
    ) {
        (Some((space, _)), _) => space.to_string(),
        (None, Some(space)) => space.to_string(),
        (None, None) => enclosing.to_string(),
    }
}

impl<'v> NamedTypes<'v> {
    /// Records every named type defined in `schema`, inline definitions included.
    fn collect(&mut self, schema: &'v Value, namespace: &str, depth: usize) {
        if depth > MAX_SCHEMA_DEPTH {
            return;
        }
        match schema {
            Value::Array(branches) => {
                for branch in branches {
                    self.collect(branch, namespace, depth + 1);
                }
            }
            Value::Object(definition) => {
                let kind = definition.get("type").and_then(Value::as_str).unwrap_or("");
                if NAMED_KINDS.contains(&kind) {
                    let space = own_namespace(definition, namespace);
                    if let Some(name) = definition.get("name").and_then(Value::as_str) {
                        self.by_full_name
                            .entry(full_name(name, &space))
                            .or_insert((schema, space.clone()));
                    }
                    if let Some(Value::Array(fields)) = definition.get("fields") {
                        for field in fields {
                            if let Some(field_type) = field.get("type") {
                                self.collect(field_type, &space, depth + 1);
                            }
                        }
                    }
                } else {
                    for key in ["items", "values", "type"] {
                        if let Some(inner) = definition
                            .get(key)
                            .filter(|inner| !inner.is_string() || key != "type")
                        {
                            self.collect(inner, namespace, depth + 1);
                        }
                    }
                }
            }
            _ => {}
        }
    }
}

struct Checker<'n, 'v> {
    names: &'n NamedTypes<'v>,
}

/// A schema after following names and `{"type": …}` wrappers: a primitive's name, or a
/// complex definition with the namespace it resolves names in.
enum Resolved<'v> {
    Primitive(&'v str),
    Complex(&'v Map<String, Value>, String),
    Union,
}

impl<'v> Checker<'_, 'v> {
    fn resolve(
        &self,
        schema: &'v Value,
        namespace: &str,
        depth: usize,
    ) -> Result<Resolved<'v>, String> {
        if depth > MAX_SCHEMA_DEPTH {
            return Err("named types nest too deeply".to_string());
        }
        match schema {
            Value::String(name) if PRIMITIVES.contains(&name.as_str()) => {
                Ok(Resolved::Primitive(name))
            }
            Value::String(name) => {
                let full = full_name(name, namespace);
                let (definition, space) = self
                    .names
                    .by_full_name
                    .get(&full)
                    .or_else(|| self.names.by_full_name.get(name.as_str()))
                    .ok_or_else(|| format!("it names an undefined type {name}"))?;
                self.resolve_definition(definition, space, depth + 1)
            }
            other => self.resolve_definition(other, namespace, depth + 1),
        }
    }

    fn resolve_definition(
        &self,
        schema: &'v Value,
        namespace: &str,
        depth: usize,
    ) -> Result<Resolved<'v>, String> {
        match schema {
            Value::Array(_) => Ok(Resolved::Union),
            Value::Object(definition) => match definition.get("type") {
                Some(Value::String(kind)) if NAMED_KINDS.contains(&kind.as_str()) => Ok(
                    Resolved::Complex(definition, own_namespace(definition, namespace)),
                ),
                Some(Value::String(kind)) if kind == "array" || kind == "map" => {
                    Ok(Resolved::Complex(definition, namespace.to_string()))
                }
                Some(inner) => self.resolve(inner, namespace, depth + 1),
                None => Err("a schema object has no \"type\"".to_string()),
            },
            Value::String(_) => self.resolve(schema, namespace, depth + 1),
            other => Err(format!("{other} is not a schema")),
        }
    }

    fn describe(resolved: &Resolved<'_>) -> String {
        match resolved {
            Resolved::Primitive(name) => (*name).to_string(),
            Resolved::Complex(definition, _) => definition
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("?")
                .to_string(),
            Resolved::Union => "a union".to_string(),
        }
    }

    fn expect_primitive(
        &self,
        schema: &'v Value,
        namespace: &str,
        wanted: &str,
        what: &str,
    ) -> Result<(), String> {
        match self.resolve(schema, namespace, 0)? {
            Resolved::Primitive(name) if name == wanted => Ok(()),
            other => Err(format!(
                "{what} is {}, expected {wanted}",
                Self::describe(&other)
            )),
        }
    }

    fn expect_complex(
        &self,
        schema: &'v Value,
        namespace: &str,
        kind: &str,
        what: &str,
    ) -> Result<(&'v Map<String, Value>, String), String> {
        match self.resolve(schema, namespace, 0)? {
            Resolved::Complex(definition, space)
                if definition.get("type").and_then(Value::as_str) == Some(kind) =>
            {
                Ok((definition, space))
            }
            other => Err(format!(
                "{what} is {}, expected {kind}",
                Self::describe(&other)
            )),
        }
    }

    fn check_event(&self, schema: &'v Value, namespace: &str) -> Result<(), String> {
        let (record, space) = self.expect_complex(schema, namespace, "record", "the event")?;
        let fields = record
            .get("fields")
            .and_then(Value::as_array)
            .ok_or("the event record has no fields")?;
        let field_names: Vec<&str> = fields
            .iter()
            .map(|field| field.get("name").and_then(Value::as_str).unwrap_or(""))
            .collect();
        if field_names != ["headers", "body"] {
            return Err(format!(
                "the event record's fields are {field_names:?}, expected [\"headers\", \"body\"]"
            ));
        }
        let field_type = |index: usize| fields[index].get("type").unwrap_or(&Value::Null);
        let (map, map_space) =
            self.expect_complex(field_type(0), &space, "map", "the headers field")?;
        self.expect_primitive(
            map.get("values").unwrap_or(&Value::Null),
            &map_space,
            "string",
            "a header value",
        )?;
        self.expect_primitive(field_type(1), &space, "bytes", "the body field")
    }

    fn check_message(
        &self,
        definition: &'v Value,
        namespace: &str,
        wants_batch: bool,
    ) -> Result<(), String> {
        if definition.get("one-way").and_then(Value::as_bool) == Some(true) {
            return Err("it is one-way, so it would get no status".to_string());
        }
        let params = definition
            .get("request")
            .and_then(Value::as_array)
            .ok_or("it has no request parameter list")?;
        let [param] = params.as_slice() else {
            return Err(format!("it takes {} parameters, expected 1", params.len()));
        };
        let param_type = param.get("type").unwrap_or(&Value::Null);
        if wants_batch {
            let (array, space) =
                self.expect_complex(param_type, namespace, "array", "the parameter")?;
            self.check_event(array.get("items").unwrap_or(&Value::Null), &space)?;
        } else {
            self.check_event(param_type, namespace)?;
        }
        let response = definition.get("response").unwrap_or(&Value::Null);
        let (status, _) = self.expect_complex(response, namespace, "enum", "the response")?;
        let symbols: Vec<&str> = status
            .get("symbols")
            .and_then(Value::as_array)
            .map(|symbols| symbols.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if !(symbols.contains(&"OK") && symbols.contains(&"FAILED")) {
            return Err(format!(
                "the response enum's symbols are {symbols:?}, expected OK and FAILED among them"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flume_json_hashes_to_the_released_flume_hash() {
        assert_eq!(FLUME_PROTOCOL_JSON.len(), 1_334);
        assert_eq!(Md5Hash::of_text(FLUME_PROTOCOL_JSON), FLUME_PROTOCOL_MD5);
        assert_eq!(
            FLUME_PROTOCOL_MD5.to_string(),
            "86aadae2c45474c0fe93ffd0f2350a65"
        );
        assert_eq!(KNOWN_COMPATIBLE_PROTOCOLS[0].md5, FLUME_PROTOCOL_MD5);
    }

    #[test]
    fn the_doc_less_rendering_hashes_to_its_known_hash() {
        let doc_start = FLUME_PROTOCOL_JSON.find(r#","doc":"#).unwrap();
        let doc_end = FLUME_PROTOCOL_JSON.find(r#","types":"#).unwrap();
        let text = [
            &FLUME_PROTOCOL_JSON[..doc_start],
            &FLUME_PROTOCOL_JSON[doc_end..],
        ]
        .concat();
        assert_eq!(Md5Hash::of_text(&text), KNOWN_COMPATIBLE_PROTOCOLS[2].md5);
    }

    #[test]
    fn flumes_own_protocol_is_compatible() {
        check_protocol_compatible(FLUME_PROTOCOL_JSON).unwrap();
    }

    #[test]
    fn pythons_rendering_with_spaces_and_empty_errors_is_compatible() {
        let python = r#"{"protocol": "AvroSourceProtocol", "namespace": "org.apache.flume.source.avro", "types": [{"type": "enum", "name": "Status", "symbols": ["OK", "FAILED", "UNKNOWN"]}, {"type": "record", "name": "AvroFlumeEvent", "fields": [{"type": {"type": "map", "values": "string"}, "name": "headers"}, {"type": "bytes", "name": "body"}]}], "messages": {"append": {"request": [{"type": "AvroFlumeEvent", "name": "event"}], "response": "Status", "errors": []}, "appendBatch": {"request": [{"type": {"type": "array", "items": "AvroFlumeEvent"}, "name": "events"}], "response": "Status", "errors": []}}}"#;
        check_protocol_compatible(python).unwrap();
        assert_eq!(Md5Hash::of_text(python), KNOWN_COMPATIBLE_PROTOCOLS[3].md5);
    }

    #[test]
    fn full_names_inline_definitions_and_java_string_properties_are_understood() {
        let text = r#"{"protocol":"P","namespace":"x.y","messages":{"appendBatch":{"request":[{"name":"b","type":{"type":"array","items":{"type":"record","name":"E","namespace":"other","fields":[{"name":"headers","type":{"type":"map","values":{"type":"string","avro.java.string":"String"}}},{"name":"body","type":"bytes"}]}}}],"response":{"type":"enum","name":"S","symbols":["FAILED","OK"]}},"append":{"request":[{"name":"e","type":"other.E"}],"response":"x.y.S"},"ping":{"request":[],"response":"null"}}}"#;
        check_protocol_compatible(text).unwrap();
    }

    #[test]
    fn nullable_header_values_are_refused() {
        let text =
            FLUME_PROTOCOL_JSON.replace(r#""values":"string""#, r#""values":["null","string"]"#);
        let error = check_protocol_compatible(&text).unwrap_err();
        assert!(
            matches!(&error, IncompatibleProtocol::MessageMismatch { message: "append", problem, .. }
                if problem == "a header value is a union, expected string"),
            "{error}"
        );
    }

    #[test]
    fn other_layouts_are_refused_saying_what_differs() {
        let string_body = FLUME_PROTOCOL_JSON.replace(
            r#"{"name":"body","type":"bytes"}"#,
            r#"{"name":"body","type":"string"}"#,
        );
        assert_eq!(
            check_protocol_compatible(&string_body).unwrap_err().to_string(),
            "protocol AvroSourceProtocol: message append is not Flume's: the body field is string, expected bytes"
        );
        let other = r#"{"protocol":"Mail","messages":{"send":{"request":[],"response":"null"}}}"#;
        assert_eq!(
            check_protocol_compatible(other),
            Err(IncompatibleProtocol::NoFlumeMessage {
                protocol: "Mail".into()
            })
        );
        let one_way = FLUME_PROTOCOL_JSON.replace(
            r#""response":"Status"}}}"#,
            r#""response":"Status","one-way":true}}}"#,
        );
        assert!(check_protocol_compatible(&one_way).is_err());
        assert!(matches!(
            check_protocol_compatible("{"),
            Err(IncompatibleProtocol::NotJson { .. })
        ));
        assert!(matches!(
            check_protocol_compatible("[]"),
            Err(IncompatibleProtocol::NotAProtocol { .. })
        ));
        let undefined =
            FLUME_PROTOCOL_JSON.replace(r#""type":"AvroFlumeEvent"}"#, r#""type":"Missing"}"#);
        assert!(check_protocol_compatible(&undefined)
            .unwrap_err()
            .to_string()
            .contains("undefined type Missing"));
    }

    #[test]
    fn the_cache_knows_the_four_renderings_and_learns_up_to_its_cap() {
        let cache = ClientProtocolCache::new(1);
        for known in KNOWN_COMPATIBLE_PROTOCOLS {
            assert!(cache.contains(&known.md5), "{}", known.presented_by);
        }
        let first = Md5Hash::of_text("first");
        let second = Md5Hash::of_text("second");
        assert!(!cache.contains(&first));
        assert!(cache.learn(first));
        assert!(cache.contains(&first));
        assert!(!cache.learn(second));
        assert!(!cache.contains(&second));
        assert_eq!(cache.learned_count(), 1);
    }
}
