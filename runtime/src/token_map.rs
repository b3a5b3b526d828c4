//! A map from host tokens to what they name, for the few entries a host
//! keeps at once (open stream ends, requests in flight): a vector searched
//! in place. Unlike a `BTreeMap`, going from empty to one entry and back
//! allocates nothing once the vector has grown, which matters on paths
//! that run per I/O request.

use alloc::vec::Vec;

#[derive(Debug)]
pub struct TokenMap<T> {
    entries: Vec<(u64, T)>,
}

impl<T> Default for TokenMap<T> {
    fn default() -> Self {
        TokenMap {
            entries: Vec::new(),
        }
    }
}

impl<T> TokenMap<T> {
    fn position(&self, k: u64) -> Option<usize> {
        self.entries.iter().position(|e| e.0 == k)
    }

    /// Sets `k` to `v`; returns the value it replaced.
    pub fn insert(&mut self, k: u64, v: T) -> Option<T> {
        match self.position(k) {
            Some(i) => Some(core::mem::replace(&mut self.entries[i].1, v)),
            None => {
                self.entries.push((k, v));
                None
            }
        }
    }

    pub fn get(&self, k: &u64) -> Option<&T> {
        self.position(*k).map(|i| &self.entries[i].1)
    }

    pub fn get_mut(&mut self, k: &u64) -> Option<&mut T> {
        self.position(*k).map(|i| &mut self.entries[i].1)
    }

    pub fn contains_key(&self, k: &u64) -> bool {
        self.position(*k).is_some()
    }

    pub fn remove(&mut self, k: &u64) -> Option<T> {
        self.position(*k).map(|i| self.entries.swap_remove(i).1)
    }

    /// In insertion order, except after removals.
    pub fn iter(&self) -> impl Iterator<Item = (&u64, &T)> {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.entries.iter().map(|e| &e.1)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::TokenMap;

    #[test]
    fn insert_get_remove() {
        let mut m = TokenMap::default();
        assert!(m.is_empty());
        assert_eq!(m.insert(7, "a"), None);
        assert_eq!(m.insert(9, "b"), None);
        assert_eq!(m.insert(7, "c"), Some("a"));
        assert_eq!(m.get(&7), Some(&"c"));
        assert!(m.contains_key(&9) && !m.contains_key(&8));
        *m.get_mut(&9).unwrap() = "d";
        assert_eq!(m.remove(&9), Some("d"));
        assert_eq!(m.remove(&9), None);
        assert_eq!(m.len(), 1);
        assert_eq!(m.iter().collect::<Vec<_>>(), [(&7, &"c")]);
    }
}
