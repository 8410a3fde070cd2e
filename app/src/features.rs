//! The features this application serves: the crates listed between the markers in
//! app/Cargo.toml, in that order (build.rs writes the list). Everything keel-app
//! derives — mounting, seeding, the task registry, the spec — comes from [`All`].

include!(concat!(env!("OUT_DIR"), "/features.rs"));
