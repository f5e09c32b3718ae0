//! Parsing of `[fake:NAME key=value ...]` directives embedded in a user message.

/// Literal that opens a directive.
pub const OPEN: &str = "[fake:";

/// Upper bound for token counts, so a typo cannot make the server build a
/// gigantic reply.
pub const MAX_TOKENS: u64 = 100_000;

/// Upper bound for any `delay_ms` (one day).
pub const MAX_DELAY_MS: u64 = 86_400_000;

/// A raw directive: its name and `key=value` parameters, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    pub name: String,
    pub params: Vec<(String, String)>,
}

/// A directive found in a text, with the byte range it occupies
/// (brackets included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub directive: Directive,
    pub start: usize,
    pub end: usize,
}

impl Found {
    /// The text with this directive cut out (not trimmed).
    pub fn strip_from(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        out.push_str(&text[..self.start]);
        out.push_str(&text[self.end..]);
        out
    }
}

/// Finds the first `[fake:...]` directive in `text`.
///
/// Returns `Ok(None)` if there is no `[fake:` at all, and `Err` if the first
/// one is malformed (no closing `]`, no name, a parameter without `=`).
pub fn find_directive(text: &str) -> Result<Option<Found>, String> {
    let Some(start) = text.find(OPEN) else {
        return Ok(None);
    };
    let body_start = start + OPEN.len();
    let Some(rel_end) = text[body_start..].find(']') else {
        return Err("malformed directive: missing ']' after '[fake:'".to_string());
    };
    let inner = &text[body_start..body_start + rel_end];
    let mut words = inner.split_whitespace();
    let name = match words.next() {
        Some(name) if !name.contains('=') => name,
        _ => return Err("malformed directive: missing scenario name after '[fake:'".to_string()),
    };
    let mut params = Vec::new();
    for word in words {
        match word.split_once('=') {
            Some((key, value)) if !key.is_empty() => {
                params.push((key.to_string(), value.to_string()));
            }
            _ => {
                return Err(format!(
                    "malformed directive parameter {word:?}: expected key=value"
                ));
            }
        }
    }
    Ok(Some(Found {
        directive: Directive {
            name: name.to_string(),
            params,
        },
        start,
        end: body_start + rel_end + 1,
    }))
}

/// A validated scenario.
#[derive(Debug, Clone, PartialEq)]
pub enum Scenario {
    Echo {
        delay_ms: u64,
    },
    Tokens {
        n: u64,
        delay_ms: u64,
    },
    Drip {
        n: u64,
        delay_ms: u64,
    },
    Fail503 {
        times: u64,
        key: String,
    },
    Ratelimit {
        times: u64,
        /// Seconds, exactly as given (validated as a non-negative number).
        retry_after: String,
        retry_after_ms: u64,
        key: String,
    },
    Always500,
    Auth401,
    Context400,
    Cut {
        after: u64,
        delay_ms: u64,
    },
    StreamError {
        after: u64,
        delay_ms: u64,
    },
    Bench {
        n: u64,
        delay_ms: u64,
    },
    Hang,
    SlowFirst {
        delay_ms: u64,
    },
    /// One tool call (Anthropic `/v1/messages` only).
    ToolUse {
        name: String,
        id: String,
        /// The input, compact JSON text of an object.
        input: String,
        /// How many `input_json_delta` fragments carry it.
        chunks: u64,
    },
    /// `calls` OpenAI-format tool calls (chat completions only), or the reply to their results.
    ToolCall {
        name: String,
        /// The arguments, as written (%-decoded; valid JSON).
        args: String,
        calls: u64,
        /// How many fragments carry each call's arguments.
        split: u64,
        /// Every call at `index` 0, told apart by id only (as Ollama and some proxies do).
        reuse_index: bool,
        /// Wait between two chunks (text tokens, call heads and fragments).
        delay_ms: u64,
    },
}

/// Every scenario name accepted in a directive.
pub const SCENARIOS: &[&str] = &[
    "echo",
    "tokens",
    "drip",
    "fail503",
    "ratelimit",
    "always500",
    "auth401",
    "context400",
    "cut",
    "stream_error",
    "bench",
    "hang",
    "slow_first",
    "tooluse",
    "toolcall",
];

/// Upper bound for `calls` in a `toolcall` directive.
pub const MAX_CALLS: u64 = 64;

/// Decodes `%XX` escapes (so a value can hold spaces, `]` or `%`). Other bytes pass as is.
fn percent_decode(value: &str) -> Result<String, String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = value
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad %-escape at byte {i} of {value:?}"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("{value:?} does not decode to UTF-8"))
}

struct Params<'a> {
    directive: &'a Directive,
}

impl<'a> Params<'a> {
    /// Checks that every parameter is one of `allowed` (or the universal,
    /// otherwise ignored, `key`).
    fn new(directive: &'a Directive, allowed: &[&str]) -> Result<Self, String> {
        for (key, _) in &directive.params {
            if key != "key" && !allowed.contains(&key.as_str()) {
                return Err(format!(
                    "unknown parameter {key:?} for scenario {:?} (allowed: {})",
                    directive.name,
                    if allowed.is_empty() {
                        "key".to_string()
                    } else {
                        format!("{}, key", allowed.join(", "))
                    }
                ));
            }
        }
        Ok(Self { directive })
    }

    /// Last value given for `key`.
    fn get(&self, key: &str) -> Option<&'a str> {
        self.directive
            .params
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn u64(&self, key: &str, default: u64) -> Result<u64, String> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v
                .parse::<u64>()
                .map_err(|_| format!("parameter {key}={v:?}: expected a non-negative integer")),
        }
    }

    fn count(&self, key: &str, default: u64) -> Result<u64, String> {
        let n = self.u64(key, default)?;
        if n > MAX_TOKENS {
            return Err(format!("parameter {key}={n}: at most {MAX_TOKENS}"));
        }
        Ok(n)
    }

    fn bool(&self, key: &str, default: bool) -> Result<bool, String> {
        match self.get(key) {
            None => Ok(default),
            Some("true") => Ok(true),
            Some("false") => Ok(false),
            Some(v) => Err(format!("parameter {key}={v:?}: expected true or false")),
        }
    }

    fn delay(&self, default: u64) -> Result<u64, String> {
        let ms = self.u64("delay_ms", default)?;
        if ms > MAX_DELAY_MS {
            return Err(format!("parameter delay_ms={ms}: at most {MAX_DELAY_MS}"));
        }
        Ok(ms)
    }

    fn key(&self) -> String {
        self.get("key").unwrap_or("").to_string()
    }
}

impl Scenario {
    pub fn from_directive(d: &Directive) -> Result<Self, String> {
        let scenario = match d.name.as_str() {
            "echo" => {
                let p = Params::new(d, &["delay_ms"])?;
                Self::Echo {
                    delay_ms: p.delay(0)?,
                }
            }
            "tokens" => {
                let p = Params::new(d, &["n", "delay_ms"])?;
                Self::Tokens {
                    n: p.count("n", 50)?,
                    delay_ms: p.delay(0)?,
                }
            }
            "drip" => {
                let p = Params::new(d, &["n", "delay_ms"])?;
                Self::Drip {
                    n: p.count("n", 20)?,
                    delay_ms: p.delay(100)?,
                }
            }
            "fail503" => {
                let p = Params::new(d, &["times"])?;
                Self::Fail503 {
                    times: p.u64("times", 1)?,
                    key: p.key(),
                }
            }
            "ratelimit" => {
                let p = Params::new(d, &["times", "retry_after"])?;
                let raw = p.get("retry_after").unwrap_or("1");
                let secs: f64 = raw
                    .parse()
                    .ok()
                    .filter(|s: &f64| s.is_finite() && *s >= 0.0)
                    .ok_or_else(|| {
                        format!("parameter retry_after={raw:?}: expected non-negative seconds")
                    })?;
                Self::Ratelimit {
                    times: p.u64("times", 1)?,
                    retry_after: raw.to_string(),
                    retry_after_ms: (secs * 1000.0).round() as u64,
                    key: p.key(),
                }
            }
            "always500" => {
                Params::new(d, &[])?;
                Self::Always500
            }
            "auth401" => {
                Params::new(d, &[])?;
                Self::Auth401
            }
            "context400" => {
                Params::new(d, &[])?;
                Self::Context400
            }
            "cut" => {
                let p = Params::new(d, &["after", "delay_ms"])?;
                Self::Cut {
                    after: p.count("after", 5)?,
                    delay_ms: p.delay(0)?,
                }
            }
            "stream_error" => {
                let p = Params::new(d, &["after", "delay_ms"])?;
                Self::StreamError {
                    after: p.count("after", 3)?,
                    delay_ms: p.delay(0)?,
                }
            }
            "bench" => {
                let p = Params::new(d, &["n", "delay_ms"])?;
                Self::Bench {
                    n: p.count("n", 50)?,
                    delay_ms: p.delay(0)?,
                }
            }
            "hang" => {
                Params::new(d, &[])?;
                Self::Hang
            }
            "slow_first" => {
                let p = Params::new(d, &["delay_ms"])?;
                Self::SlowFirst {
                    delay_ms: p.delay(2000)?,
                }
            }
            "tooluse" => {
                let p = Params::new(d, &["name", "id", "input", "chunks"])?;
                let raw = percent_decode(p.get("input").unwrap_or("{}"))
                    .map_err(|e| format!("parameter input: {e}"))?;
                let input: serde_json::Value = serde_json::from_str(&raw)
                    .ok()
                    .filter(serde_json::Value::is_object)
                    .ok_or_else(|| {
                        format!("parameter input={raw:?}: expected a JSON object (%-escape spaces and ']')")
                    })?;
                let name = p.get("name").unwrap_or("lookup");
                if name.is_empty() {
                    return Err("parameter name: must not be empty".to_string());
                }
                let chunks = p.count("chunks", 3)?;
                Self::ToolUse {
                    name: name.to_string(),
                    id: p.get("id").unwrap_or("toolu_fake_1").to_string(),
                    input: input.to_string(),
                    chunks: chunks.max(1),
                }
            }
            "toolcall" => {
                let p = Params::new(
                    d,
                    &["name", "args", "calls", "split", "reuse_index", "delay_ms"],
                )?;
                let args = percent_decode(p.get("args").unwrap_or("{}"))
                    .map_err(|e| format!("parameter args: {e}"))?;
                if serde_json::from_str::<serde_json::Value>(&args).is_err() {
                    return Err(format!(
                        "parameter args={args:?}: expected JSON (%-escape spaces and ']')"
                    ));
                }
                let name = p.get("name").unwrap_or("lookup");
                if name.is_empty() {
                    return Err("parameter name: must not be empty".to_string());
                }
                let calls = p.u64("calls", 1)?;
                if !(1..=MAX_CALLS).contains(&calls) {
                    return Err(format!("parameter calls={calls}: 1 to {MAX_CALLS}"));
                }
                let split = p.count("split", 3)?;
                if split == 0 {
                    return Err("parameter split=0: at least 1".to_string());
                }
                Self::ToolCall {
                    name: name.to_string(),
                    args,
                    calls,
                    split,
                    reuse_index: p.bool("reuse_index", false)?,
                    delay_ms: p.delay(0)?,
                }
            }
            other => {
                return Err(format!(
                    "unknown fake scenario {other:?} (known: {})",
                    SCENARIOS.join(", ")
                ));
            }
        };
        Ok(scenario)
    }

    /// The scenario name, as used in directives and in `/stats`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Echo { .. } => "echo",
            Self::Tokens { .. } => "tokens",
            Self::Drip { .. } => "drip",
            Self::Fail503 { .. } => "fail503",
            Self::Ratelimit { .. } => "ratelimit",
            Self::Always500 => "always500",
            Self::Auth401 => "auth401",
            Self::Context400 => "context400",
            Self::Cut { .. } => "cut",
            Self::StreamError { .. } => "stream_error",
            Self::Bench { .. } => "bench",
            Self::Hang => "hang",
            Self::SlowFirst { .. } => "slow_first",
            Self::ToolUse { .. } => "tooluse",
            Self::ToolCall { .. } => "toolcall",
        }
    }
}

/// Parses the directive (if any) of a user message.
///
/// Returns the scenario (`echo` when there is no directive) and the message
/// text with the directive removed and trimmed.
pub fn parse_user_text(text: &str) -> Result<(Scenario, String), String> {
    match find_directive(text)? {
        None => Ok((Scenario::Echo { delay_ms: 0 }, text.trim().to_string())),
        Some(found) => {
            let scenario = Scenario::from_directive(&found.directive)?;
            Ok((scenario, found.strip_from(text).trim().to_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(name: &str, params: &[(&str, &str)]) -> Directive {
        Directive {
            name: name.to_string(),
            params: params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn no_directive_is_echo() {
        assert_eq!(find_directive("hello world").unwrap(), None);
        let (s, text) = parse_user_text("  hello world \n").unwrap();
        assert_eq!(s, Scenario::Echo { delay_ms: 0 });
        assert_eq!(text, "hello world");
    }

    #[test]
    fn finds_first_directive_and_range() {
        let text = "hi [fake:tokens n=3 delay_ms=7] there [fake:hang]";
        let found = find_directive(text).unwrap().unwrap();
        assert_eq!(
            found.directive,
            d("tokens", &[("n", "3"), ("delay_ms", "7")])
        );
        assert_eq!(
            &text[found.start..found.end],
            "[fake:tokens n=3 delay_ms=7]"
        );
        assert_eq!(found.strip_from(text), "hi  there [fake:hang]");
    }

    #[test]
    fn directive_without_params() {
        let found = find_directive("[fake:hang]").unwrap().unwrap();
        assert_eq!(found.directive, d("hang", &[]));
        assert_eq!((found.start, found.end), (0, 11));
    }

    #[test]
    fn tolerates_extra_whitespace() {
        let found = find_directive("[fake:  cut   after=2 ]").unwrap().unwrap();
        assert_eq!(found.directive, d("cut", &[("after", "2")]));
    }

    #[test]
    fn value_may_contain_equals_and_be_empty() {
        let found = find_directive("[fake:fail503 key=a=b times=]")
            .unwrap()
            .unwrap();
        assert_eq!(
            found.directive,
            d("fail503", &[("key", "a=b"), ("times", "")])
        );
    }

    #[test]
    fn malformed_directives_are_errors() {
        assert!(find_directive("x [fake:tokens n=3").is_err());
        assert!(find_directive("[fake:]").is_err());
        assert!(find_directive("[fake: ]").is_err());
        assert!(find_directive("[fake:n=3]").is_err());
        assert!(find_directive("[fake:tokens n]").is_err());
        assert!(find_directive("[fake:tokens =3]").is_err());
    }

    #[test]
    fn unicode_around_directive() {
        let text = "héllo [fake:echo] wörld ✓";
        let (s, rest) = parse_user_text(text).unwrap();
        assert_eq!(s, Scenario::Echo { delay_ms: 0 });
        assert_eq!(rest, "héllo  wörld ✓");
    }

    #[test]
    fn defaults() {
        let p = |t: &str| parse_user_text(t).unwrap().0;
        assert_eq!(p("[fake:tokens]"), Scenario::Tokens { n: 50, delay_ms: 0 });
        assert_eq!(
            p("[fake:drip]"),
            Scenario::Drip {
                n: 20,
                delay_ms: 100
            }
        );
        assert_eq!(
            p("[fake:fail503]"),
            Scenario::Fail503 {
                times: 1,
                key: String::new()
            }
        );
        assert_eq!(
            p("[fake:ratelimit key=k]"),
            Scenario::Ratelimit {
                times: 1,
                retry_after: "1".into(),
                retry_after_ms: 1000,
                key: "k".into()
            }
        );
        assert_eq!(
            p("[fake:cut]"),
            Scenario::Cut {
                after: 5,
                delay_ms: 0
            }
        );
        assert_eq!(
            p("[fake:stream_error]"),
            Scenario::StreamError {
                after: 3,
                delay_ms: 0
            }
        );
        assert_eq!(p("[fake:bench]"), Scenario::Bench { n: 50, delay_ms: 0 });
        assert_eq!(
            p("[fake:slow_first]"),
            Scenario::SlowFirst { delay_ms: 2000 }
        );
        assert_eq!(p("[fake:hang]"), Scenario::Hang);
        assert_eq!(p("[fake:always500]"), Scenario::Always500);
        assert_eq!(p("[fake:auth401]"), Scenario::Auth401);
        assert_eq!(p("[fake:context400]"), Scenario::Context400);
    }

    #[test]
    fn explicit_values() {
        let (s, rest) = parse_user_text("go [fake:drip n=3 delay_ms=5]").unwrap();
        assert_eq!(s, Scenario::Drip { n: 3, delay_ms: 5 });
        assert_eq!(rest, "go");
        let (s, _) = parse_user_text("[fake:ratelimit times=2 retry_after=0.2 key=x]").unwrap();
        assert_eq!(
            s,
            Scenario::Ratelimit {
                times: 2,
                retry_after: "0.2".into(),
                retry_after_ms: 200,
                key: "x".into()
            }
        );
        let (s, _) = parse_user_text("[fake:echo delay_ms=10 key=tag]").unwrap();
        assert_eq!(s, Scenario::Echo { delay_ms: 10 });
    }

    #[test]
    fn invalid_scenarios_are_errors() {
        let e = |t: &str| parse_user_text(t).unwrap_err();
        assert!(e("[fake:nope]").contains("unknown fake scenario"));
        assert!(e("[fake:tokens n=abc]").contains("n="));
        assert!(e("[fake:tokens n=-1]").contains("n="));
        assert!(e("[fake:tokens m=1]").contains("unknown parameter"));
        assert!(e("[fake:hang n=1]").contains("unknown parameter"));
        assert!(e("[fake:ratelimit retry_after=soon]").contains("retry_after"));
        assert!(e("[fake:ratelimit retry_after=-1]").contains("retry_after"));
        assert!(e("[fake:tokens n=100001]").contains("at most"));
        assert!(e("[fake:drip delay_ms=86400001]").contains("at most"));
    }

    #[test]
    fn tooluse() {
        let p = |t: &str| parse_user_text(t).map(|(s, _)| s);
        assert_eq!(
            p("[fake:tooluse]").unwrap(),
            Scenario::ToolUse {
                name: "lookup".into(),
                id: "toolu_fake_1".into(),
                input: "{}".into(),
                chunks: 3
            }
        );
        assert_eq!(
            p(r#"[fake:tooluse name=get_weather id=toolu_9 chunks=5 input={"city":"San%20Francisco","days":[1,2%5D}]"#)
                .unwrap(),
            Scenario::ToolUse {
                name: "get_weather".into(),
                id: "toolu_9".into(),
                input: r#"{"city":"San Francisco","days":[1,2]}"#.into(),
                chunks: 5
            }
        );
        assert!(p("[fake:tooluse input=[1]").is_err());
        assert!(
            p("[fake:tooluse input={nope}]")
                .unwrap_err()
                .contains("JSON object")
        );
        assert!(
            p("[fake:tooluse input=%zz]")
                .unwrap_err()
                .contains("%-escape")
        );
        assert!(p("[fake:tooluse name=]").is_err());
    }

    #[test]
    fn toolcall() {
        let p = |t: &str| parse_user_text(t).map(|(s, _)| s);
        assert_eq!(
            p("[fake:toolcall]").unwrap(),
            Scenario::ToolCall {
                name: "lookup".into(),
                args: "{}".into(),
                calls: 1,
                split: 3,
                reuse_index: false,
                delay_ms: 0
            }
        );
        let (s, rest) = parse_user_text(
            r#"[fake:toolcall name=current_time args={"timeZone":"Europe/Paris","x":[1,%20"a%20b"%5D} calls=2 split=5 reuse_index=true delay_ms=7] what time?"#,
        )
        .unwrap();
        assert_eq!(
            s,
            Scenario::ToolCall {
                name: "current_time".into(),
                args: r#"{"timeZone":"Europe/Paris","x":[1, "a b"]}"#.into(),
                calls: 2,
                split: 5,
                reuse_index: true,
                delay_ms: 7
            }
        );
        assert_eq!(rest, "what time?");
        // Any JSON value is accepted (the server checks it against the tool's schema).
        assert!(matches!(
            p(r#"[fake:toolcall args={"timeZone":5}]"#).unwrap(),
            Scenario::ToolCall { args, .. } if args == r#"{"timeZone":5}"#
        ));
        assert!(p("[fake:toolcall args=[1,2%5D]").is_ok());
        assert!(
            p("[fake:toolcall args={nope}]")
                .unwrap_err()
                .contains("JSON")
        );
        assert!(
            p("[fake:toolcall args=%zz]")
                .unwrap_err()
                .contains("%-escape")
        );
        assert!(p("[fake:toolcall name=]").is_err());
        assert!(
            p("[fake:toolcall calls=0]")
                .unwrap_err()
                .contains("calls=0")
        );
        assert!(p("[fake:toolcall calls=65]").is_err());
        assert!(
            p("[fake:toolcall split=0]")
                .unwrap_err()
                .contains("split=0")
        );
        assert!(
            p("[fake:toolcall reuse_index=yes]")
                .unwrap_err()
                .contains("true or false")
        );
        assert!(
            p("[fake:toolcall chunks=2]")
                .unwrap_err()
                .contains("unknown parameter")
        );
    }

    #[test]
    fn names_round_trip() {
        for name in SCENARIOS {
            let s = parse_user_text(&format!("[fake:{name}]")).unwrap().0;
            assert_eq!(s.name(), *name);
        }
    }
}
