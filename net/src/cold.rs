//! Cold messages (config, snapshot meta, admin): serde types encoded with
//! postcard, whose wire format is documented and stable. Not for the hot
//! path: AppendEntries and heartbeats have hand-written codecs in the engine.

use crate::error::NetError;
use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Encodes `value` with postcard into a body piece.
pub fn encode<T: Serialize>(value: &T) -> Result<Bytes, NetError> {
    postcard::to_stdvec(value)
        .map(Bytes::from)
        .map_err(|source| NetError::Cold {
            what: format!("encode {}", std::any::type_name::<T>()),
            source,
        })
}

/// Decodes a `T` from `bytes`, which must hold exactly one value (trailing
/// bytes are an error: a body is one message). Total: bad input gives an
/// error, never a panic. A declared length cannot make it reserve much:
/// serde caps the preallocation a length prefix asks for (at 1 MiB), and a
/// collection then grows only with elements actually read.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, NetError> {
    let what = || format!("decode {}", std::any::type_name::<T>());
    let (value, rest) = postcard::take_from_bytes(bytes).map_err(|source| NetError::Cold {
        what: what(),
        source,
    })?;
    if !rest.is_empty() {
        return Err(NetError::Cold {
            what: format!("{}: {} trailing bytes", what(), rest.len()),
            source: postcard::Error::DeserializeBadEncoding,
        });
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde::Deserialize;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Config {
        voters: Vec<u64>,
        learners: Vec<u64>,
        name: String,
        lease_ms: Option<u32>,
    }

    proptest! {
        #[test]
        fn cold_messages_round_trip(
            voters in prop::collection::vec(any::<u64>(), 0..8),
            learners in prop::collection::vec(any::<u64>(), 0..4),
            name in ".{0,40}",
            lease_ms in any::<Option<u32>>(),
        ) {
            let c = Config { voters, learners, name, lease_ms };
            let bytes = encode(&c).expect("encodes");
            prop_assert_eq!(decode::<Config>(&bytes).expect("decodes"), c);
        }

        #[test]
        fn any_bytes_decode_to_a_value_or_an_error(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode::<Config>(&bytes);
        }
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let mut bytes = encode(&7u32).expect("encodes").to_vec();
        bytes.push(0);
        assert!(matches!(decode::<u32>(&bytes), Err(NetError::Cold { .. })));
    }
}
