//! `current_time`: what time it is in a zone. Models do not know the time; this is the most
//! asked-for tool there is.

use async_trait::async_trait;
use jiff::Timestamp;
use jiff::tz::TimeZone;
use natter_core::provider::ToolSpec;
use natter_core::tools::Tool;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

pub struct CurrentTime;

#[async_trait]
impl Tool for CurrentTime {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "current_time".into(),
            description: "The current date and time in a time zone.".into(),
            parameters: json!({
                "type": "object",
                "properties": {
                    "timeZone": {
                        "type": "string",
                        "description": "An IANA time zone such as Europe/Paris or America/New_York; UTC if left out."
                    }
                },
                "additionalProperties": false
            }),
        }
    }

    async fn run(&self, input: Value, _: CancellationToken) -> Result<Value, String> {
        let name = input["timeZone"].as_str().unwrap_or("UTC");
        let tz = TimeZone::get(name).map_err(|_| {
            format!("unknown time zone `{name}`; use an IANA name such as Europe/Paris")
        })?;
        let now = Timestamp::now().to_zoned(tz);
        Ok(json!({
            "timeZone": name,
            "iso": now.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string(),
            "weekday": now.strftime("%A").to_string(),
            "unixMs": now.timestamp().as_millisecond(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn answers_in_the_zone_asked() {
        let t = CurrentTime;
        let paris = t
            .run(
                json!({"timeZone": "Europe/Paris"}),
                CancellationToken::new(),
            )
            .await
            .unwrap();
        let iso = paris["iso"].as_str().unwrap();
        assert!(iso.ends_with("+01:00") || iso.ends_with("+02:00"), "{iso}");
        let utc = t.run(json!({}), CancellationToken::new()).await.unwrap();
        assert!(utc["iso"].as_str().unwrap().ends_with("+00:00"));
        let err = t
            .run(
                json!({"timeZone": "Mars/Olympus"}),
                CancellationToken::new(),
            )
            .await
            .unwrap_err();
        assert!(err.contains("unknown time zone"));
    }
}
