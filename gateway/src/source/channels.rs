//! The table behind a frame's [`ChannelId`]: which source and which interface name.
//!
//! SocketCAN source `i` sends frames with `ChannelId(i)` (its index in the config), so the table
//! starts with one entry per configured source. A trace source learns its channel names
//! (`can1`, or `1` in ASC/BLF) only while reading, and registers each new one here once; the
//! pipeline caches the table and looks again only for an id it has not seen.

use std::sync::{Arc, RwLock};

use can_decoders::ChannelId;

/// One channel: the source that produces it and the interface name its records carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channel {
    pub source: usize,
    pub name: Arc<str>,
}

/// Shared, append-only channel table.
#[derive(Debug, Clone, Default)]
pub struct Channels(Arc<RwLock<Vec<Channel>>>);

impl Channels {
    /// A table with `ChannelId(i)` = source `i` named `names[i]`.
    pub fn new(names: &[String]) -> Channels {
        let v = names
            .iter()
            .enumerate()
            .map(|(i, n)| Channel { source: i, name: Arc::from(n.as_str()) })
            .collect();
        Channels(Arc::new(RwLock::new(v)))
    }

    /// The id of `name` for `source`, added when new. `None` when 65,536 channels exist.
    pub fn register(&self, source: usize, name: &str) -> Option<ChannelId> {
        let mut t = self.0.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(i) = t.iter().position(|c| c.source == source && &*c.name == name) {
            return u16::try_from(i).ok().map(ChannelId);
        }
        let id = u16::try_from(t.len()).ok()?;
        t.push(Channel { source, name: Arc::from(name) });
        Some(ChannelId(id))
    }

    /// Entry `id`, if it exists.
    pub fn get(&self, id: ChannelId) -> Option<Channel> {
        let t = self.0.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        t.get(usize::from(id.0)).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_channels_get_ids_after_the_sources_and_keep_them() {
        let c = Channels::new(&["can0".into(), "replay".into()]);
        assert_eq!(c.get(ChannelId(0)).map(|c| c.name.to_string()), Some("can0".into()));
        let a = c.register(1, "can1");
        assert_eq!(a, Some(ChannelId(2)));
        assert_eq!(c.register(1, "can2"), Some(ChannelId(3)));
        assert_eq!(c.register(1, "can1"), a);
        assert_eq!(c.get(ChannelId(3)), Some(Channel { source: 1, name: "can2".into() }));
        assert_eq!(c.get(ChannelId(9)), None);
    }
}
