//! Loader behaviour on small inline DBC texts, one quirk per test.

use super::*;
