//! owner: lead
