//! The avro source's `ipFilterRules`: which peers may connect (Flume's `AvroSource`
//! with `PatternRule`).
//!
//! ```text
//! ipFilterRules = rule[,rule]...          rule = allow|deny : ip|name : pattern
//! allow:ip:127.*,allow:name:localhost,deny:ip:*
//! ```
//!
//! * Each rule is trimmed; the flag words are case-sensitive, as in Flume.
//! * A pattern matches the whole text; `*` is any run of characters, `?` one character,
//!   everything else (`.` included) is literal.
//! * `ip` patterns match the peer's address as Java prints it: `10.1.2.3`, or for IPv6
//!   eight groups of lower-case hex without zero compression (`0:0:0:0:0:0:0:1`). An
//!   IPv4 address reaching a dual-stack socket (`::ffff:10.1.2.3`) is matched as IPv4,
//!   as Java sees it.
//! * `name` patterns match the peer's reverse-DNS name, or its address text when it has
//!   none (Java's `getHostName()`). The lookup is the caller's ([`HostLookup`]), made at
//!   most once per decision and only when a `name` rule is reached.
//! * `name:localhost` is special: it matches 127.0.0.1 and the addresses the caller says
//!   are this host's own. Millrace also counts `::1` (Flume does not).
//! * Rules are tried in order and the first match decides; **no match accepts**.
//!
//! Stricter than Flume: an empty pattern or one containing whitespace (which Flume keeps
//! and never matches) is a configuration error. Flume's patterns are Java regular
//! expressions with only `.`, `*` and `?` rewritten, so other regex characters keep
//! their regex meaning there; they cannot occur in an address or a host name, and here
//! they are literal.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use thiserror::Error;

/// What a rule does to a peer it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Accept the connection.
    Allow,
    /// Close it.
    Deny,
}

/// What a rule's pattern is matched against.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    /// The address text.
    Ip(String),
    /// The reverse-DNS name.
    Name(String),
    /// `name:localhost`.
    LocalHost,
}

/// One parsed rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpFilterRule {
    access: Access,
    target: Target,
}

impl IpFilterRule {
    /// What the rule does when it matches.
    pub fn access(&self) -> Access {
        self.access
    }
}

impl fmt::Display for IpFilterRule {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let access = match self.access {
            Access::Allow => "allow",
            Access::Deny => "deny",
        };
        match &self.target {
            Target::Ip(pattern) => write!(formatter, "{access}:ip:{pattern}"),
            Target::Name(pattern) => write!(formatter, "{access}:name:{pattern}"),
            Target::LocalHost => write!(formatter, "{access}:name:localhost"),
        }
    }
}

/// Why `ipFilterRules` cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum IpFilterError {
    /// The value is empty (Flume refuses this too when `ipFilter = true`).
    #[error("ipFilterRules is empty")]
    Empty,
    /// A rule does not have the `allow|deny:ip|name:pattern` shape.
    #[error(
        "ipFilterRules rule {position} '{rule}' should look like <'allow' or 'deny'>:<'ip' or 'name'>:<pattern>"
    )]
    Malformed {
        /// The rule as written (trimmed).
        rule: String,
        /// Its place in the list, from 1.
        position: usize,
    },
    /// A rule whose pattern is empty or contains whitespace.
    #[error(
        "ipFilterRules rule {position} '{rule}' has a pattern that is empty or contains whitespace"
    )]
    BadPattern {
        /// The rule as written (trimmed).
        rule: String,
        /// Its place in the list, from 1.
        position: usize,
    },
}

/// Lookups the filter needs about a peer, supplied by the caller (so the filter stays a
/// pure function and tests need no DNS).
pub trait HostLookup {
    /// The peer's reverse-DNS name, if it has one.
    fn host_name(&self, address: IpAddr) -> Option<String>;
    /// Whether `address` is one of this host's own addresses (Java's
    /// `InetAddress.getLocalHost()`).
    fn is_local_host(&self, address: IpAddr) -> bool;
}

/// A parsed `ipFilterRules` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpFilterRules {
    rules: Vec<IpFilterRule>,
}

impl IpFilterRules {
    /// Parses the value of `ipFilterRules`. Empty entries at the end (a trailing comma)
    /// are ignored, as Java's `split` does; empty entries elsewhere are errors.
    pub fn parse(text: &str) -> Result<Self, IpFilterError> {
        if text.trim().is_empty() {
            return Err(IpFilterError::Empty);
        }
        let entries: Vec<&str> = text.split(',').collect();
        let last_non_empty = entries
            .iter()
            .rposition(|entry| !entry.is_empty())
            .unwrap_or(0);
        let rules = entries[..=last_non_empty]
            .iter()
            .enumerate()
            .map(|(index, entry)| parse_rule(entry.trim(), index + 1))
            .collect::<Result<_, _>>()?;
        Ok(IpFilterRules { rules })
    }

    /// The rules in order.
    pub fn rules(&self) -> &[IpFilterRule] {
        &self.rules
    }

    /// Whether any rule needs the peer's reverse-DNS name.
    pub fn uses_host_names(&self) -> bool {
        self.rules
            .iter()
            .any(|rule| matches!(rule.target, Target::Name(_)))
    }

    /// Decides for a peer: the first matching rule's access, or `Allow` when none
    /// matches. Also returns the rule that decided, for the log.
    pub fn decide(&self, peer: IpAddr, lookup: &dyn HostLookup) -> (Access, Option<&IpFilterRule>) {
        let peer = peer.to_canonical();
        let address_text = java_host_address(peer);
        let mut host_name: Option<String> = None;
        for rule in &self.rules {
            let matched = match &rule.target {
                Target::Ip(pattern) => glob_matches(pattern, &address_text),
                Target::Name(pattern) => {
                    let name = host_name.get_or_insert_with(|| {
                        lookup
                            .host_name(peer)
                            .unwrap_or_else(|| address_text.clone())
                    });
                    glob_matches(pattern, name)
                }
                Target::LocalHost => {
                    peer == IpAddr::V4(Ipv4Addr::LOCALHOST)
                        || peer == IpAddr::V6(Ipv6Addr::LOCALHOST)
                        || lookup.is_local_host(peer)
                }
            };
            if matched {
                return (rule.access, Some(rule));
            }
        }
        (Access::Allow, None)
    }
}

fn parse_rule(rule: &str, position: usize) -> Result<IpFilterRule, IpFilterError> {
    let malformed = || IpFilterError::Malformed {
        rule: rule.to_string(),
        position,
    };
    let mut parts = rule.splitn(3, ':');
    let access = match parts.next() {
        Some("allow") => Access::Allow,
        Some("deny") => Access::Deny,
        _ => return Err(malformed()),
    };
    let kind = parts.next().ok_or_else(malformed)?;
    // The pattern is everything after the second colon (IPv6 patterns contain colons).
    let pattern = parts.next().ok_or_else(malformed)?;
    if pattern.is_empty() || pattern.chars().any(char::is_whitespace) {
        return Err(IpFilterError::BadPattern {
            rule: rule.to_string(),
            position,
        });
    }
    let target = match kind {
        "ip" => Target::Ip(pattern.to_string()),
        "name" if pattern == "localhost" => Target::LocalHost,
        "name" => Target::Name(pattern.to_string()),
        _ => return Err(malformed()),
    };
    Ok(IpFilterRule { access, target })
}

/// An address as Java's `InetAddress.getHostAddress()` prints it.
pub fn java_host_address(address: IpAddr) -> String {
    match address {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => v6
            .segments()
            .iter()
            .map(|segment| format!("{segment:x}"))
            .collect::<Vec<_>>()
            .join(":"),
    }
}

/// Whole-text match of a pattern where `*` is any run and `?` one character.
fn glob_matches(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    let (mut at_pattern, mut at_text) = (0, 0);
    // Where the last `*` was, and the text position it currently stands for up to.
    let mut last_star: Option<(usize, usize)> = None;
    while at_text < text.len() {
        match pattern.get(at_pattern) {
            Some('*') => {
                last_star = Some((at_pattern, at_text));
                at_pattern += 1;
            }
            Some(&wanted) if wanted == '?' || wanted == text[at_text] => {
                at_pattern += 1;
                at_text += 1;
            }
            _ => match last_star {
                // Let the last star take one more character and retry after it.
                Some((star, covered)) => {
                    at_pattern = star + 1;
                    at_text = covered + 1;
                    last_star = Some((star, covered + 1));
                }
                None => return false,
            },
        }
    }
    pattern[at_pattern..].iter().all(|&rest| rest == '*')
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// A lookup from fixed tables, counting name lookups.
    #[derive(Default)]
    struct FixedLookup {
        names: HashMap<IpAddr, String>,
        local: Vec<IpAddr>,
        name_lookups: std::cell::Cell<usize>,
    }

    impl HostLookup for FixedLookup {
        fn host_name(&self, address: IpAddr) -> Option<String> {
            self.name_lookups.set(self.name_lookups.get() + 1);
            self.names.get(&address).cloned()
        }
        fn is_local_host(&self, address: IpAddr) -> bool {
            self.local.contains(&address)
        }
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn the_user_guide_example_allows_loopback_and_denies_the_rest() {
        let rules = IpFilterRules::parse("allow:ip:127.*,allow:name:localhost,deny:ip:*").unwrap();
        let lookup = FixedLookup::default();
        assert_eq!(rules.decide(ip("127.0.0.1"), &lookup).0, Access::Allow);
        assert_eq!(rules.decide(ip("127.5.6.7"), &lookup).0, Access::Allow);
        assert_eq!(rules.decide(ip("10.0.0.1"), &lookup).0, Access::Deny);
        assert_eq!(
            rules.decide(ip("::ffff:127.0.0.1"), &lookup).0,
            Access::Allow,
            "mapped IPv4 is IPv4"
        );
    }

    #[test]
    fn the_first_matching_rule_wins_and_no_match_accepts() {
        let rules = IpFilterRules::parse("deny:ip:10.0.0.1, allow:ip:10.0.0.*").unwrap();
        let lookup = FixedLookup::default();
        let (access, rule) = rules.decide(ip("10.0.0.1"), &lookup);
        assert_eq!(
            (access, rule.map(ToString::to_string)),
            (Access::Deny, Some("deny:ip:10.0.0.1".into()))
        );
        assert_eq!(rules.decide(ip("10.0.0.2"), &lookup).0, Access::Allow);
        assert_eq!(
            rules.decide(ip("192.168.1.1"), &lookup),
            (Access::Allow, None)
        );
    }

    #[test]
    fn dots_are_literal_and_question_marks_match_one_character() {
        let rules = IpFilterRules::parse("deny:ip:10.0.0.?").unwrap();
        let lookup = FixedLookup::default();
        assert_eq!(rules.decide(ip("10.0.0.7"), &lookup).0, Access::Deny);
        assert_eq!(rules.decide(ip("10.0.0.17"), &lookup).0, Access::Allow);
        let dot = IpFilterRules::parse("deny:ip:10.0.0.1").unwrap();
        assert_eq!(dot.decide(ip("10.0.0.1"), &lookup).0, Access::Deny);
        assert_eq!(
            dot.decide(ip("10.0.0.10"), &lookup).0,
            Access::Allow,
            "whole-text match"
        );
        assert!(!glob_matches("10.0", "1000"));
    }

    #[test]
    fn ipv6_addresses_match_in_javas_uncompressed_form() {
        let rules = IpFilterRules::parse("deny:ip:0:0:0:0:0:0:0:1,deny:ip:fe80:*").unwrap();
        let lookup = FixedLookup::default();
        assert_eq!(rules.decide(ip("::1"), &lookup).0, Access::Deny);
        assert_eq!(rules.decide(ip("fe80::1:2"), &lookup).0, Access::Deny);
        assert_eq!(rules.decide(ip("2001:db8::1"), &lookup).0, Access::Allow);
        assert_eq!(
            java_host_address(ip("2001:db8::a0f")),
            "2001:db8:0:0:0:0:0:a0f"
        );
    }

    #[test]
    fn name_rules_use_the_injected_lookup_once_and_fall_back_to_the_address() {
        let lookup = FixedLookup {
            names: HashMap::from([(ip("10.1.1.1"), "web-1.example.com".to_string())]),
            ..FixedLookup::default()
        };
        let rules = IpFilterRules::parse("allow:name:*.example.com,deny:name:10.2.*,allow:ip:10.*")
            .unwrap();
        assert!(rules.uses_host_names());
        assert_eq!(rules.decide(ip("10.1.1.1"), &lookup).0, Access::Allow);
        assert_eq!(
            rules.decide(ip("10.2.0.9"), &lookup).0,
            Access::Deny,
            "no name: the address text"
        );
        assert_eq!(lookup.name_lookups.get(), 2, "one lookup per decision");
        let ip_only = IpFilterRules::parse("deny:ip:10.*").unwrap();
        ip_only.decide(ip("10.1.1.1"), &lookup);
        assert_eq!(
            lookup.name_lookups.get(),
            2,
            "no lookup without a name rule"
        );
    }

    #[test]
    fn name_localhost_matches_loopback_and_the_hosts_own_addresses() {
        let lookup = FixedLookup {
            local: vec![ip("192.168.7.7")],
            ..FixedLookup::default()
        };
        let rules = IpFilterRules::parse("allow:name:localhost,deny:ip:*").unwrap();
        for allowed in ["127.0.0.1", "::1", "192.168.7.7"] {
            assert_eq!(
                rules.decide(ip(allowed), &lookup).0,
                Access::Allow,
                "{allowed}"
            );
        }
        assert_eq!(rules.decide(ip("127.0.0.2"), &lookup).0, Access::Deny);
        assert_eq!(
            lookup.name_lookups.get(),
            0,
            "localhost needs no reverse lookup"
        );
    }

    #[test]
    fn malformed_rules_are_refused_naming_the_rule() {
        assert_eq!(IpFilterRules::parse("  "), Err(IpFilterError::Empty));
        for (text, rule, position) in [
            ("allow", "allow", 1),
            ("allow:ip:1.*,permit:ip:*", "permit:ip:*", 2),
            ("allow:host:x", "allow:host:x", 1),
            ("Allow:ip:*", "Allow:ip:*", 1),
            ("allow:ip", "allow:ip", 1),
            ("allow:ip:1.*,,deny:ip:*", "", 2),
        ] {
            assert_eq!(
                IpFilterRules::parse(text),
                Err(IpFilterError::Malformed {
                    rule: rule.into(),
                    position
                }),
                "{text}"
            );
        }
        assert_eq!(
            IpFilterRules::parse("allow:ip:"),
            Err(IpFilterError::BadPattern {
                rule: "allow:ip:".into(),
                position: 1
            })
        );
        assert!(IpFilterRules::parse("allow:ip: 10.*").is_err());
        assert_eq!(
            IpFilterRules::parse("allow:ip:1.*,").unwrap().rules().len(),
            1
        );
    }

    #[test]
    fn globs_backtrack_over_several_stars() {
        assert!(glob_matches("*.*.example.*", "a.b.example.com"));
        assert!(glob_matches("a*b*c", "aXXbYYbZc"));
        assert!(!glob_matches("a*b*c", "aXXbYYbZ"));
        assert!(glob_matches("*", ""));
        assert!(!glob_matches("?", ""));
    }
}
