//! Field-by-field reading of a JSON object with precise errors.
//!
//! serde's derive would reject a payload with one message for the whole thing; clients are
//! better served by `missing_field: messageId is required`. Unknown fields are ignored, as the
//! contract asks.

use serde_json::{Map, Value};

use crate::error::{ErrorCode, WireError};

/// The longest id or short string (message, request, user, trace id) accepted, in bytes.
pub const MAX_ID_BYTES: usize = 256;

/// Refuses an id longer than [`MAX_ID_BYTES`], or holding a control character (NUL above
/// all: PostgreSQL cannot store it, and no client means one in an id).
pub fn check_id_field(event: &str, field: &str, value: &str) -> Result<(), WireError> {
    if value.len() > MAX_ID_BYTES {
        return Err(WireError::new(
            ErrorCode::TooLarge,
            format!(
                "{event}: `{field}` is {} bytes, the limit is {MAX_ID_BYTES}",
                value.len()
            ),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(WireError::new(
            ErrorCode::InvalidField,
            format!("{event}: `{field}` must not contain control characters"),
        ));
    }
    Ok(())
}

/// A CSAT `rating`: a required integer (its range is the core's to check). `4.0` counts as
/// 4; `4.5`, a string or a boolean is `invalid_field`.
pub fn req_rating(event: &str, v: &Value) -> Result<i64, WireError> {
    match v.get("rating") {
        None | Some(Value::Null) => Err(WireError::new(
            ErrorCode::MissingField,
            format!("{event}: `rating` is required"),
        )),
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && f.abs() < 1e9)
                    .map(|f| f as i64)
            })
            .ok_or_else(|| {
                WireError::new(
                    ErrorCode::InvalidField,
                    format!("{event}: `rating` must be an integer from 1 to 5, got {n}"),
                )
            }),
        Some(other) => Err(WireError::new(
            ErrorCode::InvalidField,
            format!(
                "{event}: `rating` must be an integer from 1 to 5, got {}",
                type_name(other)
            ),
        )),
    }
}

/// Most attachments one message may carry (the core checks the same limit).
pub const MAX_MESSAGE_ATTACHMENTS: usize = 10;

/// A JSON object being validated.
pub struct Fields<'a> {
    event: &'a str,
    map: &'a Map<String, Value>,
}

impl<'a> Fields<'a> {
    /// `value` must be an object; `event` names the payload in error messages.
    pub fn new(event: &'a str, value: &'a Value) -> Result<Self, WireError> {
        match value {
            Value::Object(map) => Ok(Self { event, map }),
            other => Err(WireError::new(
                ErrorCode::InvalidPayload,
                format!(
                    "{event}: the payload must be a JSON object, got {}",
                    type_name(other)
                ),
            )),
        }
    }

    /// The event name used in error messages.
    pub fn event(&self) -> &str {
        self.event
    }

    fn missing(&self, field: &str) -> WireError {
        WireError::new(
            ErrorCode::MissingField,
            format!("{}: `{field}` is required", self.event),
        )
    }

    fn invalid(&self, field: &str, expected: &str, got: &Value) -> WireError {
        WireError::new(
            ErrorCode::InvalidField,
            format!(
                "{}: `{field}` must be {expected}, got {}",
                self.event,
                type_name(got)
            ),
        )
    }

    fn present(&self, field: &str) -> Option<&'a Value> {
        self.map.get(field).filter(|v| !v.is_null())
    }

    /// An optional string. Empty strings count as absent.
    pub fn opt_str(&self, field: &str) -> Result<Option<String>, WireError> {
        match self.present(field) {
            None => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(v) => Err(self.invalid(field, "a string", v)),
        }
    }

    pub fn req_str(&self, field: &str) -> Result<String, WireError> {
        self.opt_str(field)?.ok_or_else(|| self.missing(field))
    }

    /// A string that may also arrive as an integer (ids like `chatId`, `userId`).
    pub fn opt_id(&self, field: &str) -> Result<Option<String>, WireError> {
        match self.present(field) {
            None => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) if n.is_i64() || n.is_u64() => Ok(Some(n.to_string())),
            Some(v) => Err(self.invalid(field, "a string or an integer", v)),
        }
    }

    pub fn req_id(&self, field: &str) -> Result<String, WireError> {
        self.opt_id(field)?.ok_or_else(|| self.missing(field))
    }

    /// A string that must be present but may be empty (e.g. a message text with only parts).
    pub fn req_text(&self, field: &str) -> Result<String, WireError> {
        match self.present(field) {
            None => Err(self.missing(field)),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(v) => Err(self.invalid(field, "a string", v)),
        }
    }

    pub fn opt_u64(&self, field: &str) -> Result<Option<u64>, WireError> {
        match self.present(field) {
            None => Ok(None),
            Some(Value::Number(n)) => n.as_u64().map(Some).ok_or_else(|| {
                self.invalid(field, "a non-negative integer", &Value::Number(n.clone()))
            }),
            Some(v) => Err(self.invalid(field, "a non-negative integer", v)),
        }
    }

    pub fn opt_bool(&self, field: &str) -> Result<Option<bool>, WireError> {
        match self.present(field) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(self.invalid(field, "a boolean", v)),
        }
    }

    /// A required array of ids (strings or integers), at most `max` long.
    pub fn req_id_list(&self, field: &str, max: usize) -> Result<Vec<String>, WireError> {
        let Some(v) = self.present(field) else {
            return Err(self.missing(field));
        };
        let Value::Array(items) = v else {
            return Err(self.invalid(field, "an array of ids", v));
        };
        if items.len() > max {
            return Err(WireError::new(
                ErrorCode::TooLarge,
                format!(
                    "{}: `{field}` has {} items, the limit is {max}",
                    self.event,
                    items.len()
                ),
            ));
        }
        items
            .iter()
            .map(|item| match item {
                Value::String(s) if !s.is_empty() => Ok(s.clone()),
                Value::Number(n) if n.is_i64() || n.is_u64() => Ok(n.to_string()),
                other => Err(self.invalid(field, "an array of non-empty ids", other)),
            })
            .collect()
    }

    /// Optional attachment references `[{id}, …]` (CONTRACT §7.6): their ids, at most `max`
    /// (more is `invalid_field`; absent or `null` is none).
    pub fn opt_attachment_ids(&self, field: &str, max: usize) -> Result<Vec<String>, WireError> {
        let Some(v) = self.present(field) else {
            return Ok(Vec::new());
        };
        let Value::Array(items) = v else {
            return Err(self.invalid(field, "an array of `{id}` objects", v));
        };
        if items.len() > max {
            return Err(WireError::new(
                ErrorCode::InvalidField,
                format!(
                    "{}: `{field}` has {} items, a message may carry at most {max}",
                    self.event,
                    items.len()
                ),
            ));
        }
        items
            .iter()
            .map(|item| match item.get("id") {
                Some(Value::String(s)) if !s.is_empty() && s.len() <= 128 => Ok(s.clone()),
                Some(Value::String(_)) => Err(WireError::new(
                    ErrorCode::InvalidField,
                    format!(
                        "{}: `{field}[].id` must be a non-empty string of at most 128 bytes",
                        self.event
                    ),
                )),
                Some(other) if item.is_object() => {
                    Err(self.invalid(&format!("{field}[].id"), "a string", other))
                }
                None if item.is_object() => Err(WireError::new(
                    ErrorCode::MissingField,
                    format!("{}: `{field}[].id` is required", self.event),
                )),
                _ => Err(self.invalid(field, "an array of `{id}` objects", item)),
            })
            .collect()
    }

    /// An optional object kept as raw JSON (e.g. `metadata`, `data`).
    pub fn opt_object(&self, field: &str) -> Result<Option<Value>, WireError> {
        match self.present(field) {
            None => Ok(None),
            Some(v @ Value::Object(_)) => Ok(Some(v.clone())),
            Some(v) => Err(self.invalid(field, "an object", v)),
        }
    }

    /// An optional array kept as raw JSON (e.g. message `parts`).
    pub fn opt_array(&self, field: &str) -> Result<Option<Value>, WireError> {
        match self.present(field) {
            None => Ok(None),
            Some(v @ Value::Array(_)) => Ok(Some(v.clone())),
            Some(v) => Err(self.invalid(field, "an array", v)),
        }
    }
}

/// A tool's outcome as a client sends it: `result` (any JSON) and/or `error` (a string; any
/// other JSON is kept as its text, for the model). `null` counts as absent. The core refuses
/// both at once.
pub fn tool_outcome(data: &Value) -> (Option<Value>, Option<String>) {
    let error = match data.get("error") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => Some(other.to_string()),
    };
    let result = data.get("result").filter(|v| !v.is_null()).cloned();
    (result, error)
}

/// The JSON type of a value, for error messages.
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ids_are_bounded_and_printable() {
        assert!(check_id_field("e", "chatId", "room-1 ✓").is_ok());
        let long = "x".repeat(MAX_ID_BYTES + 1);
        assert_eq!(
            check_id_field("e", "chatId", &long).unwrap_err().code,
            ErrorCode::TooLarge
        );
        for bad in ["a\0b", "a\nb", "\u{7f}"] {
            let err = check_id_field("e", "messageId", bad).unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidField, "{bad:?}");
            assert!(err.message.contains("`messageId`"));
        }
    }

    #[test]
    fn reads_and_reports() {
        let v = json!({"chatId": 42, "text": "", "n": -1, "ids": ["a", 2]});
        let f = Fields::new("user:message", &v).unwrap();
        assert_eq!(f.req_id("chatId").unwrap(), "42");
        assert_eq!(f.req_text("text").unwrap(), "");
        assert_eq!(f.req_str("text").unwrap_err().code, ErrorCode::MissingField);
        assert_eq!(f.opt_u64("n").unwrap_err().code, ErrorCode::InvalidField);
        assert_eq!(f.req_id_list("ids", 10).unwrap(), vec!["a", "2"]);
        assert_eq!(
            f.req_id_list("ids", 1).unwrap_err().code,
            ErrorCode::TooLarge
        );
        assert_eq!(
            Fields::new("x", &json!([1])).err().unwrap().code,
            ErrorCode::InvalidPayload
        );
    }
}
