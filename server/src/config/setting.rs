//! The shapes keys take between the properties reader and the typed settings.

/// A key Millrace hands on without interpreting it (an adapter's `bind`, `port`,
/// interceptors, a custom selector's keys, encryption settings), for the component that
/// will use it to validate later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawSetting {
    /// The key relative to its component: `bind` for `a1.sources.r1.bind`.
    pub key: String,
    /// The value, trimmed as Flume trims it.
    pub value: String,
    /// The line it was set on.
    pub line: usize,
}

/// One key of a declared component, e.g. `a1.channels.c1.capacity = 10` on line 7.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ComponentSetting {
    /// The full key, for messages: `a1.channels.c1.capacity`.
    pub(crate) key: String,
    /// The key relative to the component: `capacity`.
    pub(crate) sub_key: String,
    /// The trimmed value.
    pub(crate) value: String,
    pub(crate) line: usize,
}

impl ComponentSetting {
    pub(crate) fn to_raw(&self) -> RawSetting {
        RawSetting {
            key: self.sub_key.clone(),
            value: self.value.clone(),
            line: self.line,
        }
    }
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
    pub(crate) settings: Vec<ComponentSetting>,
}

impl Component {
    /// The setting with this relative key, if present.
    pub(crate) fn get(&self, sub_key: &str) -> Option<&ComponentSetting> {
        self.settings
            .iter()
            .find(|setting| setting.sub_key == sub_key)
    }

    /// The line of this relative key, if set.
    pub(crate) fn line_of(&self, sub_key: &str) -> Option<usize> {
        self.get(sub_key).map(|setting| setting.line)
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
