//! What a contract's routes share, whichever context serves them: one module per
//! contract. Contexts import these; a contract module mounts nothing, so two contexts
//! serving one contract never reach each other through it.

pub mod medagg;
