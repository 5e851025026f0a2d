//! `Text`: a JSON string and only a string. poem-openapi's `String` also takes numbers and
//! booleans (`{"image_id": 5}` becomes `"5"`), which would let a client's type mistake
//! through as if it were meant; request bodies use this instead.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Text(pub String);

impl Text {
    pub fn into_inner(self) -> String {
        self.0
    }
}

impl std::ops::Deref for Text {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Text {
    fn from(text: &str) -> Self {
        Text(text.to_owned())
    }
}

impl From<String> for Text {
    fn from(text: String) -> Self {
        Text(text)
    }
}

#[cfg(feature = "openapi")]
mod openapi {
    use std::borrow::Cow;

    use poem_openapi::registry::{MetaSchema, MetaSchemaRef};
    use poem_openapi::types::{ParseError, ParseFromJSON, ParseResult, ToJSON, Type};
    use serde_json::Value;

    use super::Text;

    impl Type for Text {
        const IS_REQUIRED: bool = true;
        type RawValueType = Self;
        type RawElementValueType = Self;

        fn name() -> Cow<'static, str> {
            "string".into()
        }

        fn schema_ref() -> MetaSchemaRef {
            MetaSchemaRef::Inline(Box::new(MetaSchema::new("string")))
        }

        fn as_raw_value(&self) -> Option<&Self> {
            Some(self)
        }

        fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a Self> + 'a> {
            Box::new(std::iter::once(self))
        }

        fn is_empty(&self) -> bool {
            self.0.is_empty()
        }
    }

    impl ParseFromJSON for Text {
        fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
            match value.unwrap_or_default() {
                Value::String(text) => Ok(Text(text)),
                other => Err(ParseError::expected_type(other)),
            }
        }
    }

    impl ToJSON for Text {
        fn to_json(&self) -> Option<Value> {
            Some(Value::String(self.0.clone()))
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn only_strings_are_text() {
            assert_eq!(
                Text::parse_from_json(Some(Value::from("cat"))).ok(),
                Some(Text::from("cat"))
            );
            for other in [Value::from(5), Value::from(false), Value::Null] {
                assert!(Text::parse_from_json(Some(other)).is_err());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_a_plain_json_string() {
        assert_eq!(
            serde_json::to_string(&Text::from("cat")).ok().as_deref(),
            Some("\"cat\"")
        );
        assert!(serde_json::from_str::<Text>("5").is_err());
    }
}
