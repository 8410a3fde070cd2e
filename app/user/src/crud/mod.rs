//! Data access only: queries over keel-user's tables, no business rules, no commits.
//! Every function takes a connection, pooled or a transaction's.

pub mod access;
pub mod sessions;
pub mod users;
