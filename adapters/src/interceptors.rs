//! Flume's common interceptors: headers a source adds to each event before the selector
//! sees it (`AGENT.sources.NAME.interceptors = i1 i2`, then `interceptors.i1.type`).

use std::time::{SystemTime, UNIX_EPOCH};

use millrace_client::Event;
use millrace_server::config::values;

use crate::settings::ComponentSettings;

/// One configured interceptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Interceptor {
    /// `timestamp`: the time the source got the event, in milliseconds since the epoch.
    Timestamp {
        /// `headerName` (`timestamp`).
        header: String,
        /// `preserveExisting` (false): keep a header already there.
        preserve_existing: bool,
    },
    /// `host`: this machine's address or name.
    Host {
        /// `hostHeader` (`host`).
        header: String,
        /// The value: the IP address (`useIP = true`, the default) or the host name.
        value: String,
        /// `preserveExisting` (false).
        preserve_existing: bool,
    },
    /// `static`: a fixed header.
    Static {
        /// `key` (`key`).
        header: String,
        /// `value` (`value`).
        value: String,
        /// `preserveExisting` (true).
        preserve_existing: bool,
    },
}

fn set_header(event: &mut Event, header: &str, value: String, preserve_existing: bool) {
    match event.headers.iter_mut().find(|(key, _)| key == header) {
        Some(_) if preserve_existing => {}
        Some((_, existing)) => *existing = value,
        None => event.headers.push((header.to_string(), value)),
    }
}

impl Interceptor {
    /// Adds this interceptor's header to `event`.
    pub fn apply(&self, event: &mut Event) {
        match self {
            Interceptor::Timestamp {
                header,
                preserve_existing,
            } => {
                let now_ms = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |since| since.as_millis());
                set_header(event, header, now_ms.to_string(), *preserve_existing);
            }
            Interceptor::Host {
                header,
                value,
                preserve_existing,
            }
            | Interceptor::Static {
                header,
                value,
                preserve_existing,
            } => set_header(event, header, value.clone(), *preserve_existing),
        }
    }
}

/// This machine's name, from the kernel.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_string())
        .unwrap_or_else(|_| "localhost".to_string())
}

/// This machine's outward IP address: the local address a UDP socket would use (no
/// packet is sent), else loopback.
fn host_address() -> String {
    std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|socket| {
            socket.connect("192.0.2.1:9")?;
            socket.local_addr()
        })
        .map(|address| address.ip().to_string())
        .unwrap_or_else(|_| "127.0.0.1".to_string())
}

/// Reads `interceptors` and each `interceptors.NAME.*` of a source.
pub fn plan_interceptors(keys: &mut ComponentSettings<'_>) -> Vec<Interceptor> {
    let Some(names) = keys.text("interceptors") else {
        return Vec::new();
    };
    let mut interceptors = Vec::new();
    for name in values::space_separated(&names) {
        let prefix = format!("interceptors.{name}.");
        let key = |sub_key: &str| format!("{prefix}{sub_key}");
        let Some(kind) = keys.required_text(&key("type"), "timestamp, host or static") else {
            continue;
        };
        let kind_lower = kind.to_ascii_lowercase();
        let interceptor = if kind_lower == "timestamp" || kind.contains("TimestampInterceptor") {
            Interceptor::Timestamp {
                header: keys.text_or(&key("headerName"), "timestamp"),
                preserve_existing: keys.boolean_or(&key("preserveExisting"), false),
            }
        } else if kind_lower == "host" || kind.contains("HostInterceptor") {
            let use_ip = keys.boolean_or(&key("useIP"), true);
            Interceptor::Host {
                header: keys.text_or(&key("hostHeader"), "host"),
                value: if use_ip { host_address() } else { host_name() },
                preserve_existing: keys.boolean_or(&key("preserveExisting"), false),
            }
        } else if kind_lower == "static" || kind.contains("StaticInterceptor") {
            Interceptor::Static {
                header: keys.text_or(&key("key"), "key"),
                value: keys.text_or(&key("value"), "value"),
                preserve_existing: keys.boolean_or(&key("preserveExisting"), true),
            }
        } else {
            keys.conflict(
                &key("type"),
                format!("expected timestamp, host or static (Millrace runs no Java classes), got {kind:?}"),
            );
            continue;
        };
        interceptors.push(interceptor);
    }
    interceptors
}

#[cfg(test)]
mod tests {
    use super::*;
    use millrace_server::config::RawSetting;

    fn raw(key: &str, value: &str) -> RawSetting {
        RawSetting {
            key: key.to_string(),
            value: value.to_string(),
            line: 1,
        }
    }

    #[test]
    fn interceptors_are_read_in_order_and_add_their_headers() {
        let settings = [
            raw("interceptors", "ts env"),
            raw("interceptors.ts.type", "timestamp"),
            raw("interceptors.env.type", "static"),
            raw("interceptors.env.key", "env"),
            raw("interceptors.env.value", "prod"),
        ];
        let mut keys = ComponentSettings::new("a.conf", "a1.sources.r1", 1, &settings);
        let interceptors = plan_interceptors(&mut keys);
        assert!(keys.finish().errors.is_empty());
        let mut event = Event::new("x").with_header("env", "dev");
        for interceptor in &interceptors {
            interceptor.apply(&mut event);
        }
        assert!(event.header("timestamp").unwrap().parse::<u64>().unwrap() > 0);
        assert_eq!(
            event.header("env"),
            Some("dev"),
            "static preserves by default"
        );
    }

    #[test]
    fn an_unknown_interceptor_type_is_an_error_naming_the_key() {
        let settings = [
            raw("interceptors", "i1"),
            raw("interceptors.i1.type", "regex_filter"),
        ];
        let mut keys = ComponentSettings::new("a.conf", "a1.sources.r1", 1, &settings);
        assert!(plan_interceptors(&mut keys).is_empty());
        let errors = keys.finish().errors;
        assert_eq!(errors.len(), 1);
        assert!(errors[0]
            .to_string()
            .contains("a1.sources.r1.interceptors.i1.type"));
    }
}
