//! Interceptors: what a source does to each event before the selector sees it
//! (`AGENT.sources.NAME.interceptors = i1 i2`, then `interceptors.i1.type`). The output of
//! one interceptor is the input of the next; an interceptor may change an event, drop it,
//! or (a script) turn it into several.
//!
//! - Flume's header interceptors, here: `timestamp`, `host`, `static`.
//! - Flume's body and header interceptors, [`flume`]: `uuid`, `search_replace`,
//!   `regex_extractor`, `regex_filter`, `remove_header` (Java regexes run by
//!   [`java_regex`]; Joda date patterns by [`joda`]).
//! - The script interceptor, [`script`]: Millrace's replacement for custom Java classes.
//!
//! ## How the `host` interceptor names this machine
//!
//! By default exactly as Flume's `HostInterceptor`, which asks Java's
//! `InetAddress.getLocalHost()` once when it starts ([`HostLookup::Resolver`]):
//!
//! 1. The host name is the kernel's (`gethostname`). If it is `localhost`, the address is
//!    the loopback address `127.0.0.1`.
//! 2. Otherwise the name is resolved through the system resolver (`getaddrinfo`, so
//!    `/etc/nsswitch.conf`: usually `/etc/hosts`, then DNS). The address is the first
//!    IPv4 address of the answer, in the resolver's order; the first IPv6 address only
//!    when there is no IPv4 one (Java's default `java.net.preferIPv6Addresses=false`).
//! 3. `useIP = true` (the default) puts that address in the header. `useIP = false` puts
//!    its canonical name (Java's `getCanonicalHostName`): the reverse lookup of the
//!    address (`getnameinfo`), kept only if that name resolves back to the address, else
//!    the address itself.
//! 4. When the host name cannot be resolved, no header is added (Flume logs a warning
//!    and adds none); Millrace logs a warning too.
//!
//! The lookup is made once per process, on first use, as Flume makes it once when the
//! interceptor is built: later changes to `/etc/hosts` or DNS are seen after a restart.
//!
//! `lookup = route` (**Millrace extension**) instead takes the address of the interface
//! that routes outward (the local address of a UDP socket connected to a TEST-NET
//! address; no packet is sent), or `127.0.0.1` without a route, and the kernel's host
//! name for `useIP = false`. It does not depend on `/etc/hosts` being right, which in
//! containers often maps the host name to a loopback address.

pub mod flume;
pub mod java_regex;
pub mod joda;
pub mod script;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use millrace_client::Event;
use millrace_config::unprovided::{instead_of, ComponentRole};
use millrace_config::{values, ComponentSettings};
use tracing::warn;

use flume::{
    RegexExtractor, RegexFilter, RemoveHeader, SearchReplace, UuidInterceptor,
    REGEX_EXTRACTOR_CLASS, REGEX_FILTER_CLASS, REMOVE_HEADER_CLASS, SEARCH_REPLACE_CLASS,
    UUID_INTERCEPTOR_CLASS,
};
use script::{ScriptError, ScriptInterceptor, ScriptSettings};

/// One configured interceptor.
#[derive(Debug, Clone)]
pub enum Interceptor {
    /// `timestamp`: the time the source got the event, in milliseconds since the epoch.
    Timestamp {
        /// `headerName` (`timestamp`).
        header: String,
        /// `preserveExisting` (false): keep a header already there.
        preserve_existing: bool,
    },
    /// `host`: this machine's address or name (see the module documentation).
    Host {
        /// `hostHeader` (`host`).
        header: String,
        /// `useIP` (true): the address, else the name.
        use_ip: bool,
        /// `lookup` (`resolver`): how the address and name are found.
        lookup: HostLookup,
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
    /// `uuid` (Flume's `UUIDInterceptor$Builder`).
    Uuid(UuidInterceptor),
    /// `search_replace`.
    SearchReplace(SearchReplace),
    /// `regex_extractor`.
    RegexExtractor(RegexExtractor),
    /// `regex_filter`.
    RegexFilter(RegexFilter),
    /// `remove_header`.
    RemoveHeader(RemoveHeader),
    /// `script` (or `lua`): one Lua state per source, shared by its connections.
    Script(Arc<ScriptInterceptor>),
}

/// How the `host` interceptor finds this machine's address and name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostLookup {
    /// Flume's choice: the kernel's host name resolved through the system resolver.
    Resolver,
    /// The address of the outward-routing interface and the kernel's host name.
    Route,
}

fn set_header(event: &mut Event, header: &str, value: String, preserve_existing: bool) {
    match event.headers.iter_mut().find(|(key, _)| key == header) {
        Some(_) if preserve_existing => {}
        Some((_, existing)) => *existing = value,
        None => event.headers.push((header.to_string(), value)),
    }
}

/// An event an interceptor failed on, set aside for the dead-letter channel.
#[derive(Debug)]
pub struct InterceptorFailure {
    /// The interceptor's name (`i1`).
    pub interceptor: String,
    /// The event as it entered that interceptor.
    pub event: Event,
    /// Why.
    pub error: ScriptError,
}

/// What a chain of interceptors made of a batch.
#[derive(Debug, Default)]
pub struct Intercepted {
    /// The events that go on, in order.
    pub events: Vec<Event>,
    /// The events set aside for the dead-letter channel.
    pub failures: Vec<InterceptorFailure>,
}

/// Runs `events` through `interceptors`, in order.
pub fn intercept_all(interceptors: &[Interceptor], mut events: Vec<Event>) -> Intercepted {
    let mut failures = Vec::new();
    for interceptor in interceptors {
        match interceptor {
            Interceptor::RegexFilter(filter) => events.retain(|event| filter.keeps(event)),
            Interceptor::Script(script) => {
                let mut out = Vec::with_capacity(events.len());
                for event in events {
                    if let Err(failure) = script.intercept(event, &mut out) {
                        failures.push(InterceptorFailure {
                            interceptor: script.settings.name.clone(),
                            event: failure.event,
                            error: failure.error,
                        });
                    }
                }
                events = out;
            }
            _ => {
                for event in &mut events {
                    interceptor.apply(event);
                }
            }
        }
    }
    Intercepted { events, failures }
}

impl Interceptor {
    /// Changes `event` in place, for the interceptors that always keep exactly one event
    /// (the others are run by [`intercept_all`]).
    fn apply(&self, event: &mut Event) {
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
                use_ip,
                lookup,
                preserve_existing,
            } => {
                if let Some(value) = host_header_value(*lookup, *use_ip) {
                    set_header(event, header, value.to_string(), *preserve_existing);
                }
            }
            Interceptor::Static {
                header,
                value,
                preserve_existing,
            } => set_header(event, header, value.clone(), *preserve_existing),
            Interceptor::Uuid(uuid) => uuid.apply(event),
            Interceptor::SearchReplace(search_replace) => search_replace.apply(event),
            Interceptor::RegexExtractor(extractor) => extractor.apply(event),
            Interceptor::RemoveHeader(remove) => remove.apply(event),
            Interceptor::RegexFilter(_) | Interceptor::Script(_) => {}
        }
    }
}

/// This machine's name, from the kernel (`gethostname`).
fn kernel_host_name() -> Option<String> {
    dns_lookup::get_hostname().ok()
}

/// A TEST-NET-1 address (RFC 5737): connecting a UDP socket to it picks the outward
/// interface without sending anything.
const OUTWARD_PROBE_ADDRESS: &str = "192.0.2.1:9";

/// The address of the interface that routes outward, else loopback.
fn outward_address() -> IpAddr {
    std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|socket| {
            socket.connect(OUTWARD_PROBE_ADDRESS)?;
            socket.local_addr()
        })
        .map(|address| address.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

/// Java's `InetAddress.getLocalHost()`: the kernel's host name through the system
/// resolver, the first IPv4 address first. `None` when the name does not resolve.
pub fn resolver_local_address() -> Option<IpAddr> {
    let name = kernel_host_name()?;
    if name == "localhost" {
        return Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    let addresses: Vec<IpAddr> = dns_lookup::lookup_host(&name).ok()?.collect();
    addresses
        .iter()
        .find(|address| address.is_ipv4())
        .or_else(|| addresses.first())
        .copied()
}

/// Java's `getCanonicalHostName`: the reverse lookup of `address` if it resolves back to
/// `address`, else the address as text.
pub fn canonical_host_name(address: IpAddr) -> String {
    dns_lookup::lookup_addr(&address)
        .ok()
        .filter(|name| {
            dns_lookup::lookup_host(name)
                .map(|mut forward| forward.any(|resolved| resolved == address))
                .unwrap_or(false)
        })
        .unwrap_or_else(|| address.to_string())
}

/// The value the `host` interceptor adds, looked up now.
pub fn look_up_host_value(lookup: HostLookup, use_ip: bool) -> Option<String> {
    let value = match (lookup, use_ip) {
        (HostLookup::Resolver, true) => resolver_local_address().map(|address| address.to_string()),
        (HostLookup::Resolver, false) => resolver_local_address().map(canonical_host_name),
        (HostLookup::Route, true) => Some(outward_address().to_string()),
        (HostLookup::Route, false) => {
            Some(kernel_host_name().unwrap_or_else(|| "localhost".to_string()))
        }
    };
    if value.is_none() {
        warn!(
            host_name = kernel_host_name().unwrap_or_default(),
            "host interceptor: this machine's host name does not resolve; no host header is added \
             (as in Flume). Fix /etc/hosts or DNS, or set lookup = route"
        );
    }
    value
}

/// The value of the `host` header for this choice, looked up once per process.
fn host_header_value(lookup: HostLookup, use_ip: bool) -> Option<&'static str> {
    static VALUES: [OnceLock<Option<String>>; 4] = [const { OnceLock::new() }; 4];
    let slot = match (lookup, use_ip) {
        (HostLookup::Resolver, true) => 0,
        (HostLookup::Resolver, false) => 1,
        (HostLookup::Route, true) => 2,
        (HostLookup::Route, false) => 3,
    };
    VALUES[slot]
        .get_or_init(|| look_up_host_value(lookup, use_ip))
        .as_deref()
}

/// The interceptor types Millrace runs, for messages.
const INTERCEPTOR_TYPES: &str = "timestamp, host, static, uuid, search_replace, \
     regex_extractor, regex_filter, remove_header or script (Flume's class names of these \
     are accepted too)";

/// The Java class name of Flume's built-in interceptor `simple_name` (`TimestampInterceptor`).
fn flume_class(simple_name: &str) -> String {
    format!("org.apache.flume.interceptor.{simple_name}$Builder")
}

fn type_is(kind: &str, alias: &str, class_name: &str) -> bool {
    kind.eq_ignore_ascii_case(alias) || kind == class_name
}

/// Reads `interceptors` and each `interceptors.NAME.*` of a source.
pub fn plan_interceptors(keys: &mut ComponentSettings<'_>) -> Vec<Interceptor> {
    let Some(names) = keys.text("interceptors") else {
        return Vec::new();
    };
    let has_dead_letter = keys.is_set("deadLetter.channel");
    let mut interceptors = Vec::new();
    for name in values::space_separated(&names) {
        let prefix = format!("interceptors.{name}.");
        let key = |sub_key: &str| format!("{prefix}{sub_key}");
        let Some(kind) = keys.required_text(&key("type"), INTERCEPTOR_TYPES) else {
            continue;
        };
        let kind = kind.as_str();
        let interceptor = if type_is(kind, "timestamp", &flume_class("TimestampInterceptor")) {
            Some(Interceptor::Timestamp {
                header: keys.text_or(&key("headerName"), "timestamp"),
                preserve_existing: keys.boolean_or(&key("preserveExisting"), false),
            })
        } else if type_is(kind, "host", &flume_class("HostInterceptor")) {
            let lookup = keys.choice_or(&key("lookup"), "resolver", &["resolver", "route"]);
            Some(Interceptor::Host {
                header: keys.text_or(&key("hostHeader"), "host"),
                use_ip: keys.boolean_or(&key("useIP"), true),
                lookup: if lookup == "route" {
                    HostLookup::Route
                } else {
                    HostLookup::Resolver
                },
                preserve_existing: keys.boolean_or(&key("preserveExisting"), false),
            })
        } else if type_is(kind, "static", &flume_class("StaticInterceptor")) {
            Some(Interceptor::Static {
                header: keys.text_or(&key("key"), "key"),
                value: keys.text_or(&key("value"), "value"),
                preserve_existing: keys.boolean_or(&key("preserveExisting"), true),
            })
        } else if type_is(kind, "uuid", UUID_INTERCEPTOR_CLASS) {
            Some(Interceptor::Uuid(UuidInterceptor::read(keys, &prefix)))
        } else if type_is(kind, "search_replace", SEARCH_REPLACE_CLASS) {
            SearchReplace::read(keys, &prefix).map(Interceptor::SearchReplace)
        } else if type_is(kind, "regex_extractor", REGEX_EXTRACTOR_CLASS) {
            RegexExtractor::read(keys, &prefix).map(Interceptor::RegexExtractor)
        } else if type_is(kind, "regex_filter", REGEX_FILTER_CLASS) {
            RegexFilter::read(keys, &prefix).map(Interceptor::RegexFilter)
        } else if type_is(kind, "remove_header", REMOVE_HEADER_CLASS) {
            RemoveHeader::read(keys, &prefix).map(Interceptor::RemoveHeader)
        } else if type_is(kind, "script", "script") || type_is(kind, "lua", "lua") {
            ScriptSettings::read(keys, &prefix, name, has_dead_letter)
                .map(|settings| Interceptor::Script(Arc::new(ScriptInterceptor::new(settings))))
        } else {
            keys.conflict(
                &key("type"),
                format!(
                    "expected {INTERCEPTOR_TYPES}, got {kind:?}: {}",
                    instead_of(ComponentRole::Interceptor, kind)
                ),
            );
            None
        };
        interceptors.extend(interceptor);
    }
    interceptors
}

#[cfg(test)]
mod tests {
    use super::*;
    use millrace_config::RawSetting;

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
        let event = intercept_all(
            &interceptors,
            vec![Event::new("x").with_header("env", "dev")],
        )
        .events
        .remove(0);
        assert!(event.header("timestamp").unwrap().parse::<u64>().unwrap() > 0);
        assert_eq!(
            event.header("env"),
            Some("dev"),
            "static preserves by default"
        );
    }

    /// Where `getent`, the check's independent view of the system resolver, comes from.
    const GETENT_HOW_TO_GET: &str = "apt-get install libc-bin";

    /// The first line of `getent DATABASE KEY` (glibc's resolver, through nsswitch),
    /// split on whitespace; `None` when getent is missing or finds nothing.
    fn getent(database: &str, key: &str) -> Option<Vec<String>> {
        let output = std::process::Command::new("getent")
            .args([database, key])
            .output()
            .ok()?;
        let text = String::from_utf8(output.stdout).ok()?;
        let first = text.lines().next()?;
        Some(first.split_whitespace().map(str::to_string).collect())
    }

    #[test]
    fn the_host_interceptor_by_default_adds_the_address_the_system_resolver_gives_for_the_host_name(
    ) {
        let settings = [raw("interceptors", "h"), raw("interceptors.h.type", "host")];
        let mut keys = ComponentSettings::new("a.conf", "a1.sources.r1", 1, &settings);
        let interceptors = plan_interceptors(&mut keys);
        assert!(keys.finish().errors.is_empty());
        if millrace_e2e::require_tool("getent", GETENT_HOW_TO_GET).is_none() {
            return;
        }
        let host_name = kernel_host_name().expect("a host name");
        let Some(expected) = getent("ahostsv4", &host_name).map(|fields| fields[0].clone()) else {
            println!("skipped: {host_name} does not resolve");
            return;
        };
        let event = intercept_all(&interceptors, vec![Event::new("x")])
            .events
            .remove(0);
        assert_eq!(event.header("host"), Some(expected.as_str()));
    }

    #[test]
    fn use_ip_false_gives_the_canonical_name_of_the_resolved_address() {
        if millrace_e2e::require_tool("getent", GETENT_HOW_TO_GET).is_none() {
            return;
        }
        let Some(address) = resolver_local_address() else {
            println!("skipped: this machine's host name does not resolve");
            return;
        };
        let name = look_up_host_value(HostLookup::Resolver, false).expect("a name");
        let reverse = getent("hosts", &address.to_string()).map(|fields| fields[1].clone());
        match reverse {
            // Kept only when it resolves back to the address, as Java checks.
            Some(reverse) if name != address.to_string() => assert_eq!(name, reverse),
            _ => assert_eq!(name, address.to_string()),
        }
    }

    #[test]
    fn lookup_route_and_bad_lookup_values_are_read_from_the_key() {
        let settings = [
            raw("interceptors", "h"),
            raw("interceptors.h.type", "host"),
            raw("interceptors.h.lookup", "route"),
            raw("interceptors.h.useIP", "false"),
        ];
        let mut keys = ComponentSettings::new("a.conf", "a1.sources.r1", 1, &settings);
        let interceptors = plan_interceptors(&mut keys);
        assert!(keys.finish().errors.is_empty());
        assert!(matches!(
            interceptors.as_slice(),
            [Interceptor::Host {
                header,
                use_ip: false,
                lookup: HostLookup::Route,
                preserve_existing: false,
            }] if header == "host"
        ));
        let settings = [
            raw("interceptors", "h"),
            raw("interceptors.h.type", "host"),
            raw("interceptors.h.lookup", "dns"),
        ];
        let mut keys = ComponentSettings::new("a.conf", "a1.sources.r1", 1, &settings);
        plan_interceptors(&mut keys);
        let errors = keys.finish().errors;
        assert_eq!(errors.len(), 1);
        assert!(errors[0]
            .to_string()
            .contains("a1.sources.r1.interceptors.h.lookup"));
    }

    #[test]
    fn an_unknown_interceptor_type_is_an_error_naming_the_key() {
        let settings = [
            raw("interceptors", "i1"),
            raw("interceptors.i1.type", "com.example.MyInterceptor$Builder"),
        ];
        let mut keys = ComponentSettings::new("a.conf", "a1.sources.r1", 1, &settings);
        assert!(plan_interceptors(&mut keys).is_empty());
        let errors = keys.finish().errors;
        assert_eq!(errors.len(), 1);
        let message = errors[0].to_string();
        assert!(
            message.contains("a1.sources.r1.interceptors.i1.type"),
            "{message}"
        );
        assert!(message.contains("type = script"), "{message}");
    }
}
