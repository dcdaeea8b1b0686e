//! Wire types of the responses: handlers build their JSON from these structs, and the
//! OpenAPI document describes them from the same structs (`schemars`), so the two
//! cannot drift apart. Request bodies are the handlers' own `Deserialize` types, next
//! to them. Each module follows one contract (`errors`: every contract's error shape).

pub mod errors;
pub mod inference;
pub mod logins;
pub mod medagg;
pub mod myo;
pub mod ops;
