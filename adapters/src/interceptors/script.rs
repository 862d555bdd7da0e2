//! The script interceptor (`type = script`, or `lua`): a Lua function that receives each
//! event and returns it changed, several events, or none. Millrace's replacement for the
//! custom Java interceptors Flume agents carry (Flume has no scripting interceptor;
//! Fluent Bit's Lua filter is the model).
//!
//! ## The contract a script sees
//!
//! ```lua
//! function intercept(event)            -- `function` key: the name (default intercept)
//!   -- event.headers: a table of header name -> value (strings)
//!   -- event.body:    the body, a Lua string (bytes, not necessarily UTF-8)
//!   event.headers["env"] = "prod"
//!   return event                        -- one event
//!   -- return nil                       -- no event (dropped)
//!   -- return a, b                      -- several events (or return {a, b})
//! end
//! ```
//!
//! A returned event is any table with `body` (a string; absent = empty) and `headers`
//! (absent = none); header values may be strings, numbers or booleans. Headers keep the
//! order they had when they come out unchanged; new ones follow in name order. Besides
//! Lua's `string`, `table`, `math`, `utf8` and `coroutine` libraries, scripts get
//! `json.decode(text)`, `json.encode(value)` and `print` (to the agent's log).
//!
//! ## Why Lua 5.4 (vendored) rather than Luau
//!
//! Both are sandboxable and both can be stopped mid-loop. Lua 5.4 is the language users of
//! Fluent Bit's Lua filter and of nginx/OpenResty already write (5.1-style code runs
//! unchanged, plus integers and `utf8`), its C sources build in seconds with only a C
//! compiler (Luau is a C++ build several times longer, on every CI run), and its
//! instruction-count hook gives a deterministic preemption point that can *yield* the
//! script out, which `pcall` in the script cannot catch.
//!
//! ## Limits and sandbox
//!
//! - **No file, process or network access**: `io`, `os`, `package`/`require`, `debug`,
//!   `load`, `loadfile`, `dofile` and `string.dump` are absent, unless named in
//!   `libraries` (`io`, `os`, `package`), which the operator chooses knowingly.
//! - **Time** (`timeLimitMs`, per event): every [`HOOK_INSTRUCTION_INTERVAL`] Lua
//!   instructions a hook compares the clock with the event's deadline. Past it, the
//!   script is suspended (a coroutine yield, which `pcall` cannot catch) and abandoned.
//!   Time spent inside one call of a C library function (a single huge `string.rep`, a
//!   pathological `string.find` pattern) is only checked when it returns.
//! - **Memory** (`memoryLimitBytes`): Lua's allocator refuses allocations beyond the
//!   limit for the whole Lua state (the script's globals and the event being handled), so
//!   a script allocating without bound fails with a memory error; what it held is then
//!   collected.
//! - **Failure** (an error, the time or the memory limit, a result that is not an event):
//!   the event as it entered the interceptor goes where `onError` says: `deadLetter`
//!   (the default when the source has `deadLetter.channel`), `pass` (the default
//!   otherwise: it continues unchanged, as Fluent Bit does), or `drop`. Every failure is
//!   logged with the reason; the agent keeps running.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use millrace_client::Event;
use millrace_config::{values, ComponentSettings};
use mlua::chunk::ChunkMode;
use mlua::thread::ThreadStatus;
use mlua::{
    FromLuaMulti, Function, HookTriggers, IntoLuaMulti, Lua, LuaOptions, LuaSerdeExt, LuaString,
    MultiValue, StdLib, Table, Thread, Value, Variadic, VmState,
};
use thiserror::Error;
use tracing::{info, warn};

/// Lua instructions between two checks of the deadline: frequent enough that a runaway
/// loop is stopped within microseconds of its deadline, rare enough that the check (one
/// clock read) costs nothing measurable.
pub const HOOK_INSTRUCTION_INTERVAL: u32 = 1_000;
/// `timeLimitMs` by default: far above what adding a field or parsing a JSON body takes
/// (microseconds), low enough that a runaway script holds a source up only briefly.
pub const DEFAULT_TIME_LIMIT_MS: u64 = 100;
/// `memoryLimitBytes` by default: 64 MiB for the whole Lua state.
pub const DEFAULT_MEMORY_LIMIT_BYTES: u64 = 64 * 1024 * 1024;
/// The function called when `function` is not set.
pub const DEFAULT_FUNCTION: &str = "intercept";
/// The deadline while no event is being handled.
const NO_DEADLINE: u64 = u64::MAX;

/// Why the script failed on an event (or could not be loaded).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ScriptError {
    /// The script does not compile, or its top level failed.
    #[error("{message}")]
    Load {
        /// Lua's message, with the chunk name and line (`interceptors.i1.script:3: …`).
        message: String,
    },
    /// The function to call is not defined by the script.
    #[error("the script defines no function {name:?} (set `function` to the one to call)")]
    MissingFunction {
        /// The name looked for.
        name: String,
    },
    /// The script raised an error.
    #[error("the script failed: {message}")]
    Runtime {
        /// Lua's message, with the line.
        message: String,
    },
    /// The script ran past `timeLimitMs`.
    #[error("the script ran past its time limit of {limit_ms} ms (timeLimitMs) and was stopped")]
    TimeLimit {
        /// The limit.
        limit_ms: u64,
    },
    /// The Lua state needed more than `memoryLimitBytes`.
    #[error(
        "the script needed more memory than its limit of {limit_bytes} bytes (memoryLimitBytes)"
    )]
    MemoryLimit {
        /// The limit.
        limit_bytes: u64,
    },
    /// The function returned something that is not an event.
    #[error("the script returned {problem}")]
    BadResult {
        /// What was wrong.
        problem: String,
    },
}

/// What happens to an event the script failed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// It goes to the source's `deadLetter.channel`, with headers saying why.
    DeadLetter,
    /// It continues unchanged.
    Pass,
    /// It is dropped (logged and counted).
    Drop,
}

/// Extra Lua libraries an operator may open (each lifts part of the sandbox).
const OPTIONAL_LIBRARIES: &[(&str, StdLib)] = &[
    ("io", StdLib::IO),
    ("os", StdLib::OS),
    ("package", StdLib::PACKAGE),
];

/// The libraries every script gets: no access outside the Lua state.
fn sandboxed_libraries() -> StdLib {
    StdLib::TABLE | StdLib::STRING | StdLib::MATH | StdLib::UTF8 | StdLib::COROUTINE
}

/// Base-library functions removed from the sandbox: they read files or load bytecode.
const REMOVED_GLOBALS: &[&str] = &["load", "loadfile", "dofile"];

/// The settings of one script interceptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptSettings {
    /// The interceptor's name (`i1`), for logs and dead-letter headers.
    pub name: String,
    /// The Lua source.
    pub source: String,
    /// The chunk name in messages: the key or the file.
    pub chunk_name: String,
    /// `function`.
    pub function: String,
    /// `timeLimitMs`.
    pub time_limit: Duration,
    /// `memoryLimitBytes`.
    pub memory_limit_bytes: u64,
    /// `libraries`.
    pub libraries: Vec<String>,
    /// `onError`.
    pub on_error: OnError,
}

impl ScriptSettings {
    /// Reads the keys under `prefix` (`interceptors.i1.`) of interceptor `name`;
    /// `has_dead_letter`: whether the source sets `deadLetter.channel`. `None` when a key
    /// is bad (recorded).
    pub fn read(
        keys: &mut ComponentSettings<'_>,
        prefix: &str,
        name: &str,
        has_dead_letter: bool,
    ) -> Option<Self> {
        let script_key = format!("{prefix}script");
        let file_key = format!("{prefix}file");
        let inline = keys.text(&script_key);
        let file = keys.text(&file_key);
        let function = keys.text_or(&format!("{prefix}function"), DEFAULT_FUNCTION);
        let time_limit_ms = keys.count_or(&format!("{prefix}timeLimitMs"), DEFAULT_TIME_LIMIT_MS);
        let memory_limit_bytes = keys.count_or(
            &format!("{prefix}memoryLimitBytes"),
            DEFAULT_MEMORY_LIMIT_BYTES,
        );
        let libraries_key = format!("{prefix}libraries");
        let libraries: Vec<String> = keys
            .text(&libraries_key)
            .map(|list| {
                values::space_separated(&list)
                    .into_iter()
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let mut bad = false;
        for library in &libraries {
            if !OPTIONAL_LIBRARIES
                .iter()
                .any(|(known, _)| *known == library)
            {
                keys.refuse(&libraries_key, "io, os or package", library);
                bad = true;
            }
        }
        let on_error_key = format!("{prefix}onError");
        let default_on_error = if has_dead_letter {
            "deadLetter"
        } else {
            "pass"
        };
        let on_error = match keys.choice_or(
            &on_error_key,
            default_on_error,
            &["deadLetter", "pass", "drop"],
        ) {
            "deadLetter" => OnError::DeadLetter,
            "drop" => OnError::Drop,
            _ => OnError::Pass,
        };
        if on_error == OnError::DeadLetter && !has_dead_letter {
            keys.conflict(
                &on_error_key,
                "expected pass or drop, or deadLetter.channel set on the source: deadLetter \
                 needs a dead-letter channel",
            );
            bad = true;
        }
        let (source, chunk_name, source_key) = match (inline, file) {
            (Some(source), None) => (source, script_key.clone(), script_key),
            (None, Some(path)) => match std::fs::read_to_string(&path) {
                Ok(source) => (source, path, file_key),
                Err(error) => {
                    keys.refuse(&file_key, &format!("a readable Lua file ({error})"), &path);
                    return None;
                }
            },
            (Some(_), Some(_)) => {
                keys.conflict(&file_key, "expected either script or file, not both");
                return None;
            }
            (None, None) => {
                keys.missing(
                    &script_key,
                    "a Lua script (script, inline) or a Lua file (file)",
                );
                return None;
            }
        };
        let settings = ScriptSettings {
            name: name.to_string(),
            source,
            chunk_name,
            function,
            time_limit: Duration::from_millis(time_limit_ms),
            memory_limit_bytes,
            libraries,
            on_error,
        };
        if bad {
            return None;
        }
        if let Err(error) = ScriptRuntime::load(&settings) {
            keys.conflict(
                &source_key,
                format!("expected a script that loads: {error}"),
            );
            return None;
        }
        Some(settings)
    }
}

/// The Lua function each event goes through: it builds the event table inside the VM
/// from the body and the headers (flat name, value arguments), calls the script's
/// function and, when that returned one event with string headers, keeps it as
/// `holder.event` and returns it flattened into one string (`string.pack("<I4s4s4s4…")`:
/// header count, body, then each name and value, every string a `u32` length and its
/// bytes). So an event crosses between Rust and Lua once each way instead of once per
/// value: the per-value crossings were most of the cost (docs/perf.md, "Interceptors
/// (issue 22)"). For anything else (no event, several, a number as a header value, a bad
/// result) it keeps the results in `holder.results` (`table.pack`) and returns nil, and
/// Rust converts them value by value. The code is written for few VM instructions and C
/// calls: with the instruction-count hook of the time limit set, every instruction costs
/// more than usual.
const EVENT_WRAPPER: &str = r#"
local user, holder = ...
local type, next, rawget, rawlen, select = type, next, rawget, rawlen, select
local pack, unpack, pack_results, rep = string.pack, table.unpack, table.pack, string.rep
local formats = {}
local flat = {}
local function slow(...)
  holder.results = pack_results(...)
  return nil
end
local function finish(...)
  if select('#', ...) ~= 1 then return slow(...) end
  local event = ...
  if type(event) ~= 'table' or rawlen(event) > 0 then return slow(event) end
  holder.event = event
  local out_body = rawget(event, 'body')
  if out_body == nil then out_body = '' elseif type(out_body) ~= 'string' then return slow(event) end
  local out_headers = rawget(event, 'headers')
  local count = 0
  if out_headers ~= nil then
    if type(out_headers) ~= 'table' then return slow(event) end
    for key, value in next, out_headers do
      if type(key) ~= 'string' or type(value) ~= 'string' then return slow(event) end
      flat[count * 2 + 1] = key
      flat[count * 2 + 2] = value
      count = count + 1
    end
  end
  local format = formats[count]
  if format == nil then
    format = '<I4s4' .. rep('s4', 2 * count)
    formats[count] = format
  end
  return pack(format, count, out_body, unpack(flat, 1, count * 2))
end
return function(body, ...)
  local given = { ... }
  local count = #given
  local headers
  -- Constructors size the table once, with a spare slot (the [false] = nil entry is
  -- counted but not stored) for the header a script typically adds.
  if count == 4 then
    headers = { [given[1]] = given[2], [given[3]] = given[4], [false] = nil }
  elseif count == 2 then
    headers = { [given[1]] = given[2], [false] = nil }
  elseif count == 6 then
    headers = { [given[1]] = given[2], [given[3]] = given[4], [given[5]] = given[6], [false] = nil }
  else
    headers = {}
    for index = 1, count, 2 do headers[given[index]] = given[index + 1] end
  end
  return finish(user({ headers = headers, body = body }))
end
"#;

/// A loaded script: its Lua state and function, ready for events.
struct ScriptRuntime {
    lua: Lua,
    /// [`EVENT_WRAPPER`] around the script's function.
    function: Function,
    /// Holds, as `results`, what the script's function returned for the last event (`n`
    /// and `1..n`), for results the wrapper does not flatten.
    holder: Table,
    /// A finished coroutine, reset and reused for the next event (a new one per event
    /// cost an allocation and a registry slot).
    idle_thread: Option<Thread>,
    /// Nanoseconds after `clock_base` past which the hook stops the script.
    deadline_ns: Arc<AtomicU64>,
    /// Set by the hook when it stopped the script.
    timed_out: Arc<AtomicBool>,
    /// Set by the hook when it asked the script to yield (see [`ScriptRuntime::load`]).
    yield_asked: Arc<AtomicBool>,
    clock_base: Instant,
    time_limit: Duration,
    memory_limit_bytes: u64,
}

impl ScriptRuntime {
    fn load(settings: &ScriptSettings) -> Result<Self, ScriptError> {
        let load_error = |error: mlua::Error| ScriptError::Load {
            message: first_paragraph(&error.to_string()),
        };
        let mut libraries = sandboxed_libraries();
        for name in &settings.libraries {
            if let Some((_, library)) = OPTIONAL_LIBRARIES.iter().find(|(known, _)| known == name) {
                libraries |= *library;
            }
        }
        let lua = Lua::new_with(libraries, LuaOptions::default()).map_err(load_error)?;
        let globals = lua.globals();
        for removed in REMOVED_GLOBALS {
            globals.raw_set(*removed, Value::Nil).map_err(load_error)?;
        }
        if let Ok(string) = globals.raw_get::<Table>("string") {
            string.raw_set("dump", Value::Nil).map_err(load_error)?;
        }
        install_helpers(&lua, &settings.name).map_err(load_error)?;
        let clock_base = Instant::now();
        let deadline_ns = Arc::new(AtomicU64::new(NO_DEADLINE));
        let timed_out = Arc::new(AtomicBool::new(false));
        let hook_deadline = Arc::clone(&deadline_ns);
        let hook_timed_out = Arc::clone(&timed_out);
        // Set when the hook asked for a yield: if the hook runs again, the yield did not
        // happen (a C function stood in the way) and this check errors instead.
        let yield_asked = Arc::new(AtomicBool::new(false));
        let hook_yield_asked = Arc::clone(&yield_asked);
        lua.set_global_hook(
            HookTriggers::new().every_nth_instruction(HOOK_INSTRUCTION_INTERVAL),
            move |_, _| {
                let now_ns = u64::try_from(clock_base.elapsed().as_nanos()).unwrap_or(u64::MAX);
                if now_ns <= hook_deadline.load(Ordering::Relaxed) {
                    return Ok(VmState::Continue);
                }
                // Yield where the script can be suspended; where it cannot (inside a C
                // function calling back into Lua), the next check raises an error instead
                // to unwind to a place where it can.
                hook_timed_out.store(true, Ordering::Relaxed);
                if hook_yield_asked.fetch_xor(true, Ordering::Relaxed) {
                    Err(mlua::Error::runtime("time limit (timeLimitMs) reached"))
                } else {
                    Ok(VmState::Yield)
                }
            },
        )
        .map_err(load_error)?;
        let memory_limit = usize::try_from(settings.memory_limit_bytes).unwrap_or(usize::MAX);
        lua.set_memory_limit(memory_limit).map_err(load_error)?;
        let chunk = lua
            .load(settings.source.as_str())
            .set_name(format!("={}", settings.chunk_name))
            .set_mode(ChunkMode::Text)
            .into_function()
            .map_err(load_error)?;
        let holder = lua.create_table().map_err(load_error)?;
        let mut runtime = ScriptRuntime {
            function: chunk.clone(),
            holder,
            idle_thread: None,
            lua,
            deadline_ns,
            timed_out,
            yield_asked,
            clock_base,
            time_limit: settings.time_limit,
            memory_limit_bytes: settings.memory_limit_bytes,
        };
        runtime
            .run::<MultiValue>(&chunk, ())
            .map_err(|error| ScriptError::Load {
                message: error.to_string(),
            })?;
        let function = match runtime
            .lua
            .globals()
            .raw_get::<Value>(settings.function.as_str())
        {
            Ok(Value::Function(function)) => function,
            _ => {
                return Err(ScriptError::MissingFunction {
                    name: settings.function.clone(),
                })
            }
        };
        runtime.function = runtime
            .lua
            .load(EVENT_WRAPPER)
            .set_name("=millrace.eventWrapper")
            .set_mode(ChunkMode::Text)
            .call((function, runtime.holder.clone()))
            .map_err(load_error)?;
        Ok(runtime)
    }

    /// Runs `function` with `arguments` in a fresh coroutine under the time and memory
    /// limits.
    fn run<R: FromLuaMulti>(
        &mut self,
        function: &Function,
        arguments: impl IntoLuaMulti,
    ) -> Result<R, ScriptError> {
        let thread = match self.idle_thread.take() {
            Some(thread) => thread.reset(function.clone()).map(|()| thread),
            None => self.lua.create_thread(function.clone()),
        }
        .map_err(|error| self.classify(error))?;
        let start_ns = u64::try_from(self.clock_base.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let limit_ns = u64::try_from(self.time_limit.as_nanos()).unwrap_or(u64::MAX);
        self.timed_out.store(false, Ordering::Relaxed);
        self.yield_asked.store(false, Ordering::Relaxed);
        self.deadline_ns
            .store(start_ns.saturating_add(limit_ns), Ordering::Relaxed);
        let outcome = thread.resume::<R>(arguments);
        self.deadline_ns.store(NO_DEADLINE, Ordering::Relaxed);
        let stopped = self.timed_out.swap(false, Ordering::Relaxed);
        let status = thread.status();
        let suspended = status == ThreadStatus::Resumable;
        if status == ThreadStatus::Finished && outcome.is_ok() {
            self.idle_thread = Some(thread);
        }
        match outcome {
            Ok(_) if suspended && stopped => {
                self.collect_garbage();
                Err(ScriptError::TimeLimit {
                    limit_ms: self.time_limit_ms(),
                })
            }
            Ok(_) if suspended => Err(ScriptError::BadResult {
                problem: "by yielding (coroutine.yield outside a coroutine of its own)".into(),
            }),
            Ok(values) => Ok(values),
            Err(error) => {
                let error = if stopped && !matches!(error, mlua::Error::MemoryError(_)) {
                    ScriptError::TimeLimit {
                        limit_ms: self.time_limit_ms(),
                    }
                } else {
                    self.classify(error)
                };
                self.collect_garbage();
                Err(error)
            }
        }
    }

    fn time_limit_ms(&self) -> u64 {
        u64::try_from(self.time_limit.as_millis()).unwrap_or(u64::MAX)
    }

    /// Frees what a failed call left behind, so the next event starts with room.
    fn collect_garbage(&self) {
        if let Err(error) = self.lua.gc_collect() {
            warn!(%error, "script interceptor: collecting garbage after a failure failed");
        }
    }

    fn classify(&self, error: mlua::Error) -> ScriptError {
        if is_memory_error(&error) {
            return ScriptError::MemoryLimit {
                limit_bytes: self.memory_limit_bytes,
            };
        }
        ScriptError::Runtime {
            message: first_paragraph(&error.to_string()),
        }
    }

    /// Calls the function on `event`, adding what it returns to `out`.
    fn intercept(&mut self, event: &Event, out: &mut Vec<Event>) -> Result<(), ScriptError> {
        let body = self
            .lua
            .create_string(&event.body)
            .map_err(|error| self.classify(error))?;
        let headers: Variadic<&str> = event
            .headers
            .iter()
            .flat_map(|(name, value)| [name.as_str(), value.as_str()])
            .collect();
        let function = self.function.clone();
        let returned: Value = self.run(&function, (&body, headers))?;
        drop(body);
        let produced_before = out.len();
        let values: Vec<Value> = if let Value::String(flattened) = &returned {
            if read_flattened(&flattened.as_bytes(), &event.body, &event.headers, out).is_some() {
                return Ok(());
            }
            // A header that is not UTF-8: the event, converted below, says which.
            out.truncate(produced_before);
            vec![self
                .holder
                .raw_get::<Value>("event")
                .map_err(|error| self.classify(error))?]
        } else {
            let results: Table = self
                .holder
                .raw_get("results")
                .map_err(|error| self.classify(error))?;
            let count: usize = results.raw_get("n").map_err(|error| self.classify(error))?;
            (1..=count)
                .map(|index| results.raw_get::<Value>(index))
                .collect::<mlua::Result<_>>()
                .map_err(|error| self.classify(error))?
        };
        for value in values {
            if let Err(problem) = lua_to_events(value, &event.headers, out, 0) {
                out.truncate(produced_before);
                return Err(ScriptError::BadResult { problem });
            }
        }
        Ok(())
    }
}

fn is_memory_error(error: &mlua::Error) -> bool {
    match error {
        mlua::Error::MemoryError(_) => true,
        mlua::Error::CallbackError { cause, .. } => is_memory_error(cause),
        mlua::Error::WithContext { cause, .. } => is_memory_error(cause),
        _ => false,
    }
}

/// Lua's message without the stack traceback mlua appends.
fn first_paragraph(message: &str) -> String {
    message
        .split("\nstack traceback:")
        .next()
        .unwrap_or(message)
        .trim_end()
        .to_string()
}

/// `json.decode`, `json.encode` and `print` for scripts.
fn install_helpers(lua: &Lua, interceptor: &str) -> mlua::Result<()> {
    let json = lua.create_table()?;
    json.set(
        "decode",
        lua.create_function(|lua, text: LuaString| {
            let parsed: serde_json::Value = serde_json::from_slice(&text.as_bytes())
                .map_err(|error| mlua::Error::runtime(format!("json.decode: {error}")))?;
            lua.to_value(&parsed)
        })?,
    )?;
    json.set(
        "encode",
        lua.create_function(|lua, value: Value| {
            let value: serde_json::Value = lua.from_value(value)?;
            serde_json::to_string(&value)
                .map_err(|error| mlua::Error::runtime(format!("json.encode: {error}")))
        })?,
    )?;
    lua.globals().set("json", json)?;
    let name = interceptor.to_string();
    lua.globals().set(
        "print",
        lua.create_function(move |_, values: MultiValue| {
            let text: Vec<String> = values
                .iter()
                .map(|value| value.to_string().unwrap_or_else(|_| "?".into()))
                .collect();
            info!(interceptor = %name, "{}", text.join("\t"));
            Ok(())
        })?,
    )?;
    Ok(())
}

/// Splits one length-prefixed string of [`EVENT_WRAPPER`]'s output off `bytes`.
fn take_flattened_string<'a>(bytes: &mut &'a [u8]) -> Option<&'a [u8]> {
    let length = take_flattened_count(bytes)?;
    if bytes.len() < length {
        return None;
    }
    let (text, rest) = bytes.split_at(length);
    *bytes = rest;
    Some(text)
}

/// Splits one `u32` of [`EVENT_WRAPPER`]'s output off `bytes`.
fn take_flattened_count(bytes: &mut &[u8]) -> Option<usize> {
    let (count, rest) = bytes.split_first_chunk::<4>()?;
    *bytes = rest;
    usize::try_from(u32::from_le_bytes(*count)).ok()
}

/// Adds the events [`EVENT_WRAPPER`] flattened into `bytes` to `out` (`reference_*`:
/// the event the script was given). `None` when a
/// header is not UTF-8 (the caller then converts the results value by value, which
/// reports it).
fn read_flattened(
    mut bytes: &[u8],
    reference_body: &bytes::Bytes,
    reference_headers: &[(String, String)],
    out: &mut Vec<Event>,
) -> Option<()> {
    while !bytes.is_empty() {
        let header_count = take_flattened_count(&mut bytes)?;
        let body = take_flattened_string(&mut bytes)?;
        // A body the script left as it was is shared, not copied.
        let body = if body == reference_body.as_ref() {
            reference_body.clone()
        } else {
            bytes::Bytes::copy_from_slice(body)
        };
        let mut headers = Vec::with_capacity(header_count.min(bytes.len() / 8));
        for _ in 0..header_count {
            let name = std::str::from_utf8(take_flattened_string(&mut bytes)?).ok()?;
            let value = std::str::from_utf8(take_flattened_string(&mut bytes)?).ok()?;
            headers.push((name.to_string(), value.to_string()));
        }
        out.push(Event {
            headers: in_reference_order(headers, reference_headers),
            body,
        });
    }
    Some(())
}

/// Nesting of lists of events a result may have (`{ {a, b}, c }`).
const MAX_RESULT_NESTING: usize = 2;

/// Adds the events `value` stands for to `out`: nil or false (none), an event table, or a
/// list of event tables.
fn lua_to_events(
    value: Value,
    reference_headers: &[(String, String)],
    out: &mut Vec<Event>,
    depth: usize,
) -> Result<(), String> {
    match value {
        Value::Nil | Value::Boolean(false) => Ok(()),
        Value::Table(table) if table.raw_len() > 0 => {
            if depth >= MAX_RESULT_NESTING {
                return Err("lists of events nested too deeply".into());
            }
            for item in table.sequence_values::<Value>() {
                let item = item.map_err(|error| error.to_string())?;
                lua_to_events(item, reference_headers, out, depth + 1)?;
            }
            Ok(())
        }
        Value::Table(table) => {
            out.push(table_to_event(&table, reference_headers)?);
            Ok(())
        }
        other => Err(format!(
            "a {}, where an event table, a list of them or nil was expected",
            other.type_name()
        )),
    }
}

fn table_to_event(table: &Table, reference_headers: &[(String, String)]) -> Result<Event, String> {
    let body = match table
        .raw_get::<Value>("body")
        .map_err(|error| error.to_string())?
    {
        Value::Nil => bytes::Bytes::new(),
        Value::String(body) => bytes::Bytes::copy_from_slice(&body.as_bytes()),
        other => {
            return Err(format!(
                "an event whose body is a {} (expected a string)",
                other.type_name()
            ))
        }
    };
    let mut headers: Vec<(String, String)> = Vec::new();
    match table
        .raw_get::<Value>("headers")
        .map_err(|error| error.to_string())?
    {
        Value::Nil => {}
        Value::Table(found) => {
            for pair in found.pairs::<Value, Value>() {
                let (key, value) = pair.map_err(|error| error.to_string())?;
                let Value::String(key) = key else {
                    return Err(format!("a header name that is a {}", key.type_name()));
                };
                let value = match value {
                    Value::String(value) => value
                        .to_str()
                        .map_err(|error| error.to_string())?
                        .to_string(),
                    Value::Integer(value) => value.to_string(),
                    Value::Number(value) => value.to_string(),
                    Value::Boolean(value) => value.to_string(),
                    other => {
                        return Err(format!(
                            "a header value that is a {} (expected a string, number or boolean)",
                            other.type_name()
                        ))
                    }
                };
                let key = key.to_str().map_err(|error| error.to_string())?.to_string();
                headers.push((key, value));
            }
        }
        other => {
            return Err(format!(
                "headers that are a {} (expected a table)",
                other.type_name()
            ))
        }
    }
    Ok(Event {
        headers: in_reference_order(headers, reference_headers),
        body,
    })
}

/// Headers in the order of `reference` for the names it has, then the rest by name.
fn in_reference_order(
    mut headers: Vec<(String, String)>,
    reference: &[(String, String)],
) -> Vec<(String, String)> {
    headers.sort_by(|(left, _), (right, _)| {
        let position = |name: &str| reference.iter().position(|(key, _)| key == name);
        match (position(left), position(right)) {
            (Some(left), Some(right)) => left.cmp(&right),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => left.cmp(right),
        }
    });
    headers
}

/// A script interceptor: one Lua state per source, shared by the source's connections.
pub struct ScriptInterceptor {
    /// Its settings.
    pub settings: ScriptSettings,
    runtime: Mutex<Result<ScriptRuntime, ScriptError>>,
}

impl std::fmt::Debug for ScriptInterceptor {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ScriptInterceptor")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// An event the script failed on, for the dead-letter channel.
#[derive(Debug)]
pub struct ScriptFailure {
    /// The event as it entered the interceptor.
    pub event: Event,
    /// Why.
    pub error: ScriptError,
}

impl ScriptInterceptor {
    /// Loads the script. A script that fails to load here (it loaded when the
    /// configuration was read, so only if its state cannot be created) fails every event.
    pub fn new(settings: ScriptSettings) -> Self {
        let runtime = ScriptRuntime::load(&settings);
        ScriptInterceptor {
            settings,
            runtime: Mutex::new(runtime),
        }
    }

    /// Runs the script on `event`, adding what it returns to `out`; a failure is handled
    /// as `onError` says, and comes back only for the dead-letter channel.
    pub fn intercept(&self, event: Event, out: &mut Vec<Event>) -> Result<(), ScriptFailure> {
        let outcome = {
            let mut runtime = self
                .runtime
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match runtime.as_mut() {
                Ok(runtime) => runtime.intercept(&event, out),
                Err(error) => Err(error.clone()),
            }
        };
        let Err(error) = outcome else {
            return Ok(());
        };
        let interceptor = &self.settings.name;
        match self.settings.on_error {
            OnError::DeadLetter => Err(ScriptFailure { event, error }),
            OnError::Pass => {
                warn!(%interceptor, %error, "script interceptor failed on an event; it continues unchanged (onError = pass)");
                out.push(event);
                Ok(())
            }
            OnError::Drop => {
                warn!(%interceptor, %error, "script interceptor failed on an event; it is dropped (onError = drop)");
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(source: &str) -> ScriptSettings {
        ScriptSettings {
            name: "i1".into(),
            source: source.into(),
            chunk_name: "interceptors.i1.script".into(),
            function: DEFAULT_FUNCTION.into(),
            time_limit: Duration::from_millis(DEFAULT_TIME_LIMIT_MS),
            memory_limit_bytes: 8 * 1024 * 1024,
            libraries: Vec::new(),
            on_error: OnError::DeadLetter,
        }
    }

    fn run(source: &str, event: Event) -> Result<Vec<Event>, ScriptError> {
        let interceptor = ScriptInterceptor::new(settings(source));
        let mut out = Vec::new();
        interceptor
            .intercept(event, &mut out)
            .map_err(|failure| failure.error)?;
        Ok(out)
    }

    #[test]
    fn a_script_adds_a_field_keeping_the_header_order() {
        let out = run(
            "function intercept(event)\n  event.headers.env = 'prod'\n  return event\nend",
            Event::new("x").with_header("b", "1").with_header("a", "2"),
        )
        .unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(
            out[0].headers,
            [
                ("b".to_string(), "1".to_string()),
                ("a".to_string(), "2".to_string()),
                ("env".to_string(), "prod".to_string())
            ]
        );
        assert_eq!(out[0].body.as_ref(), b"x");
    }

    #[test]
    fn a_script_drops_by_content_and_splits_into_several_events() {
        let drop_debug = "function intercept(e) if e.body:find('DEBUG', 1, true) then return nil end return e end";
        assert!(run(drop_debug, Event::new("DEBUG noise"))
            .unwrap()
            .is_empty());
        assert_eq!(run(drop_debug, Event::new("INFO kept")).unwrap().len(), 1);
        let split = "function intercept(e)\n local out = {}\n for word in e.body:gmatch('%S+') do out[#out + 1] = { body = word, headers = e.headers } end\n return out\nend";
        let out = run(split, Event::new("a b c").with_header("h", "v")).unwrap();
        let bodies: Vec<&[u8]> = out.iter().map(|event| event.body.as_ref()).collect();
        assert_eq!(bodies, [b"a", b"b", b"c"]);
        assert!(out.iter().all(|event| event.header("h") == Some("v")));
        let two_values = "function intercept(e) return e, { body = 'copy' } end";
        assert_eq!(run(two_values, Event::new("x")).unwrap().len(), 2);
    }

    #[test]
    fn a_header_that_is_not_utf8_is_refused_as_a_bad_result() {
        let error = run(
            "function intercept(e) e.headers.bad = 'a\\xffb' return e end",
            Event::new("x").with_header("kept", "1"),
        )
        .unwrap_err();
        assert!(matches!(error, ScriptError::BadResult { .. }), "{error:?}");
    }

    #[test]
    fn a_number_or_boolean_header_value_is_turned_into_text() {
        let out = run(
            "function intercept(e) e.headers.n = 7 e.headers.f = true return e end",
            Event::new("x"),
        )
        .unwrap();
        assert_eq!(
            out[0].headers,
            [
                ("f".to_string(), "true".to_string()),
                ("n".to_string(), "7".to_string())
            ]
        );
    }

    #[test]
    fn a_script_parses_a_json_body_into_headers() {
        let source = "function intercept(e)\n  local doc = json.decode(e.body)\n  e.headers.level = doc.level\n  e.headers.code = doc.code\n  return e\nend";
        let out = run(source, Event::new(r#"{"level":"warn","code":42}"#)).unwrap();
        assert_eq!(out[0].header("level"), Some("warn"));
        assert_eq!(out[0].header("code"), Some("42"));
        let error = run(source, Event::new("not json")).unwrap_err();
        assert!(
            matches!(&error, ScriptError::Runtime { message } if message.contains("json.decode")),
            "{error}"
        );
    }

    #[test]
    fn a_script_that_loops_forever_is_stopped_even_when_it_catches_errors() {
        for source in [
            "function intercept(e) while true do end end",
            "function intercept(e) while true do pcall(function() while true do end end) end end",
            // Inside a C function calling back into Lua, where no yield is possible.
            "function intercept(e) table.sort({3, 2, 1}, function(a, b) while true do end end) end",
        ] {
            let mut settings = settings(source);
            settings.time_limit = Duration::from_millis(20);
            let interceptor = ScriptInterceptor::new(settings);
            let mut out = Vec::new();
            let failure = interceptor
                .intercept(Event::new("x"), &mut out)
                .unwrap_err();
            assert_eq!(
                failure.error,
                ScriptError::TimeLimit { limit_ms: 20 },
                "{source}"
            );
            assert_eq!(failure.event.body.as_ref(), b"x");
        }
    }

    #[test]
    fn a_script_allocating_without_bound_hits_its_memory_limit_and_the_next_event_works() {
        let source = "grow = {}\nfunction intercept(e)\n  if e.body == 'grow' then local t = {} for i = 1, 1e9 do t[i] = string.rep('x', 64) .. i end end\n  return e\nend";
        let mut settings = settings(source);
        // Only the memory limit should stop it, however loaded the machine is.
        settings.time_limit = Duration::from_secs(60);
        let interceptor = ScriptInterceptor::new(settings);
        let mut out = Vec::new();
        let failure = interceptor
            .intercept(Event::new("grow"), &mut out)
            .unwrap_err();
        assert!(
            matches!(failure.error, ScriptError::MemoryLimit { .. }),
            "{}",
            failure.error
        );
        interceptor.intercept(Event::new("fine"), &mut out).unwrap();
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn the_sandbox_has_no_files_processes_or_bytecode() {
        for global in [
            "io", "os", "require", "load", "loadfile", "dofile", "debug", "package",
        ] {
            let source = format!("function intercept(e) e.headers.t = type({global}) return e end");
            let out = run(&source, Event::new("x")).unwrap();
            assert_eq!(out[0].header("t"), Some("nil"), "{global}");
        }
        let out = run(
            "function intercept(e) e.headers.t = type(string.dump) return e end",
            Event::new("x"),
        )
        .unwrap();
        assert_eq!(out[0].header("t"), Some("nil"));
    }

    #[test]
    fn load_errors_name_the_line_and_a_missing_function_is_named() {
        let error = ScriptRuntime::load(&settings(
            "local x = 1\nfunction intercept(e)\n  return e +\nend",
        ))
        .err()
        .unwrap();
        assert!(
            error.to_string().contains("interceptors.i1.script:4:"),
            "{error}"
        );
        let error = ScriptRuntime::load(&settings("function other(e) return e end"))
            .err()
            .unwrap();
        assert_eq!(
            error,
            ScriptError::MissingFunction {
                name: "intercept".into()
            }
        );
    }

    #[test]
    fn a_runtime_error_and_a_bad_result_are_failures_with_their_reason() {
        let error = run(
            "function intercept(e)\n  error('boom')\nend",
            Event::new("x"),
        )
        .unwrap_err();
        assert!(
            error.to_string().contains("interceptors.i1.script:2: boom"),
            "{error}"
        );
        let error = run("function intercept(e) return 42 end", Event::new("x")).unwrap_err();
        assert!(matches!(error, ScriptError::BadResult { .. }), "{error}");
    }
}
