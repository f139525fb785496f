//! owner: fill in
