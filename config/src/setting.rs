//! The shapes keys take between the properties reader and the typed settings.

use crate::component_settings::{ComponentSettings, EmptyValues};

/// One key of a component, relative to it: `capacity` on line 7 for
/// `a1.channels.c1.capacity = 10`. Keys Millrace hands on without interpreting them (an
/// adapter's `bind`, `port`, interceptors, a custom selector's keys) keep this shape, for
/// the component that will use them to read with [`ComponentSettings`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawSetting {
    /// The key relative to its component: `bind` for `a1.sources.r1.bind`.
    pub key: String,
    /// The value, trimmed as Flume trims it.
    pub value: String,
    /// The line it was set on.
    pub line: usize,
}

/// A component of the chosen agent with all its keys, in file order.
#[derive(Debug, Clone)]
pub(crate) struct Component {
    /// The component's name, as listed in `AGENT.channels` and the like.
    pub(crate) name: String,
    /// The prefix of its keys: `a1.channels.c1`.
    pub(crate) key_prefix: String,
    /// The line of the list that declares it; missing required keys are reported here.
    pub(crate) declared_line: usize,
    pub(crate) settings: Vec<RawSetting>,
}

impl Component {
    /// A reader of its keys, for keys Millrace acts on itself (empty values refused).
    pub(crate) fn reader<'a>(&'a self, file: &'a str) -> ComponentSettings<'a> {
        ComponentSettings::new(file, &self.key_prefix, self.declared_line, &self.settings)
            .with_empty_values(EmptyValues::Refused)
    }

    /// The line of this relative key, if set.
    pub(crate) fn line_of(&self, sub_key: &str) -> Option<usize> {
        self.settings
            .iter()
            .find(|setting| setting.key == sub_key)
            .map(|setting| setting.line)
    }

    /// The line of this relative key, or the declaration when it is not set.
    pub(crate) fn line_of_or_declaration(&self, sub_key: &str) -> usize {
        self.line_of(sub_key).unwrap_or(self.declared_line)
    }

    /// The full key for a relative one: `a1.channels.c1.` + `capacity`.
    pub(crate) fn full_key(&self, sub_key: &str) -> String {
        format!("{}.{sub_key}", self.key_prefix)
    }
}
