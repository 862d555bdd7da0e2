//! Client properties: Flume's defaults, the `kafka.producer.*` / `kafka.consumer.*`
//! pass-through keys, and the values Millrace forces, in that order (as Flume applies
//! them).
//!
//! Flume passes the pass-through keys to the Java client; Millrace passes them to
//! librdkafka, whose property names are the Java client's for everything a Flume
//! configuration usually sets (`acks`, `linger.ms`, `compression.type`,
//! `security.protocol`, `sasl.mechanism`, `sasl.username`, …). Each one is checked
//! against librdkafka's own table when the configuration is read, without creating a
//! client, so an unknown or bad property is a configuration error naming its line.

use millrace_config::ComponentSettings;
use rdkafka::config::ClientConfig;

/// Java client properties librdkafka has no use for: Millrace always reads and writes
/// keys and values as bytes, which is what Flume's default (de)serializers do.
const JAVA_ONLY_PROPERTIES: &[&str] = &[
    "key.serializer",
    "value.serializer",
    "key.deserializer",
    "value.deserializer",
];

/// The properties one client is made with, in the order they are applied (a later
/// entry for the same name wins).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientProperties {
    entries: Vec<(String, String)>,
}

impl ClientProperties {
    /// Sets `name` (replacing an earlier value).
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        let value = value.into();
        match self.entries.iter_mut().find(|(known, _)| known == name) {
            Some(entry) => entry.1 = value,
            None => self.entries.push((name.to_string(), value)),
        }
    }

    /// The value of `name`, if set.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(known, _)| known == name)
            .map(|(_, value)| value.as_str())
    }

    /// Every property, in order.
    pub fn entries(&self) -> &[(String, String)] {
        &self.entries
    }

    /// librdkafka's configuration of these properties.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        for (name, value) in &self.entries {
            config.set(name, value);
        }
        config
    }

    /// Reads every `prefix<property>` key (`kafka.producer.linger.ms`) into these
    /// properties, refusing those librdkafka does not know or cannot take, and
    /// `forced` ones (set by Millrace whatever the pass-through says) with a warning.
    /// `read_elsewhere` are properties the component reads as keys of its own.
    pub fn read_pass_through(
        &mut self,
        keys: &mut ComponentSettings<'_>,
        prefix: &str,
        forced: &[&str],
        read_elsewhere: &[&str],
    ) {
        for (property, value, _line) in keys.with_prefix(prefix) {
            let key = format!("{prefix}{property}");
            if read_elsewhere.contains(&property) {
                continue;
            }
            if JAVA_ONLY_PROPERTIES.contains(&property) {
                keys.warn(
                    &key,
                    "accepted but not used: Millrace reads and writes Kafka keys and values \
                     as bytes, as Flume's default (de)serializers do",
                );
                continue;
            }
            if forced.contains(&property) {
                keys.warn(
                    &key,
                    format!("ignored: Millrace sets {property} itself (as Flume does)"),
                );
                continue;
            }
            match check_property(property, value) {
                Ok(()) => self.set(property, value),
                Err(problem) => keys.refuse(
                    &key,
                    &format!("a librdkafka client property and value it accepts ({problem})"),
                    value,
                ),
            }
        }
    }
}

/// Whether librdkafka accepts `name = value`, checked on a configuration that is never
/// turned into a client.
pub fn check_property(name: &str, value: &str) -> Result<(), String> {
    let mut config = ClientConfig::new();
    config.set(name, value);
    match config.create_native_config() {
        Ok(_) => Ok(()),
        Err(rdkafka::error::KafkaError::ClientConfig(_, description, _, _)) => Err(description),
        Err(error) => Err(error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn librdkafka_accepts_the_java_names_flume_configs_use() {
        for (name, value) in [
            ("acks", "all"),
            ("linger.ms", "5"),
            ("compression.type", "lz4"),
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanism", "SCRAM-SHA-512"),
            ("auto.offset.reset", "earliest"),
            ("max.poll.interval.ms", "300000"),
        ] {
            assert_eq!(check_property(name, value), Ok(()), "{name} = {value}");
        }
    }

    #[test]
    fn an_unknown_property_or_a_bad_value_is_refused_with_librdkafkas_reason() {
        let unknown = check_property("lingerr.ms", "5").unwrap_err();
        assert!(unknown.contains("lingerr.ms"), "{unknown}");
        // linger.ms is librdkafka's alias of queue.buffering.max.ms, which its reason names.
        let bad = check_property("linger.ms", "soon").unwrap_err();
        assert!(bad.contains("Invalid value"), "{bad}");
    }

    #[test]
    fn a_later_value_of_a_property_replaces_the_earlier_one() {
        let mut properties = ClientProperties::default();
        properties.set("acks", "1");
        properties.set("linger.ms", "5");
        properties.set("acks", "all");
        assert_eq!(
            properties.entries(),
            [
                ("acks".to_string(), "all".to_string()),
                ("linger.ms".to_string(), "5".to_string())
            ]
        );
    }
}
