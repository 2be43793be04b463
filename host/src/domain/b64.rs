//! Serde for byte fields as base64 text (standard alphabet, padded), so messages that carry
//! checkpoint state or inline output over the broker grow by a third, not fourfold as JSON
//! arrays of numbers would.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Deserializer, Serializer};

pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&STANDARD.encode(bytes))
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
    STANDARD.decode(text.as_bytes()).map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use crate::state::{Checkpoint, InputRef};

    #[test]
    fn byte_fields_travel_as_base64() -> anyhow::Result<()> {
        let cp = Checkpoint { seq: 1, state: vec![0, 255, 7], output_tail: b"tail".to_vec(), ..Checkpoint::default() };
        let json = serde_json::to_string(&cp)?;
        assert!(json.contains("\"state\":\"AP8H\""), "{json}");
        assert_eq!(serde_json::from_str::<Checkpoint>(&json)?, cp);
        let input = InputRef::Inline(b"hello".to_vec());
        let json = serde_json::to_string(&input)?;
        assert_eq!(json, "{\"Inline\":\"aGVsbG8=\"}");
        assert_eq!(serde_json::from_str::<InputRef>(&json)?, input);
        assert!(serde_json::from_str::<InputRef>("{\"Inline\":\"not base64!\"}").is_err());
        Ok(())
    }
}
