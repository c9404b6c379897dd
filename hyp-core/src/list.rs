//! `List<T, N>`: a fixed-capacity vector for `Copy` types, so boot-time structures need no heap.

use core::ops::Deref;

/// A vector of at most `N` elements stored inline.
#[derive(Clone, Copy)]
pub struct List<T: Copy + Default, const N: usize> {
    items: [T; N],
    len: usize,
}

impl<T: Copy + Default, const N: usize> Default for List<T, N> {
    fn default() -> Self {
        Self { items: [T::default(); N], len: 0 }
    }
}

impl<T: Copy + Default, const N: usize> List<T, N> {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }
    /// An empty list using `items` as its (ignored) storage; usable in `const` contexts.
    pub const fn with_storage(items: [T; N]) -> Self {
        Self { items, len: 0 }
    }
    /// Appends `v`; gives it back when the list is full.
    pub fn push(&mut self, v: T) -> Result<(), T> {
        if self.len == N {
            return Err(v);
        }
        self.items[self.len] = v;
        self.len += 1;
        Ok(())
    }
    /// Removes and returns element `i` (order kept, in place); `None` past the end.
    pub fn remove(&mut self, i: usize) -> Option<T> {
        if i >= self.len {
            return None;
        }
        let v = self.items[i];
        self.items.copy_within(i + 1..self.len, i);
        self.len -= 1;
        Some(v)
    }
    /// Builds a list from a slice; `None` if it does not fit.
    pub fn from_slice(s: &[T]) -> Option<Self> {
        let mut l = Self::new();
        for v in s {
            l.push(*v).ok()?;
        }
        Some(l)
    }
}

impl<T: Copy + Default, const N: usize> core::ops::DerefMut for List<T, N> {
    fn deref_mut(&mut self) -> &mut [T] {
        &mut self.items[..self.len]
    }
}

impl<T: Copy + Default, const N: usize> Deref for List<T, N> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.items[..self.len]
    }
}

impl<T: Copy + Default + core::fmt::Debug, const N: usize> core::fmt::Debug for List<T, N> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_until_full() {
        let mut l: List<u8, 2> = List::new();
        assert!(l.push(1).is_ok());
        assert!(l.push(2).is_ok());
        assert_eq!(l.push(3), Err(3));
        assert_eq!(&l[..], &[1, 2]);
        assert!(List::<u8, 1>::from_slice(&[1, 2]).is_none());
        let mut l: List<u8, 4> = List::from_slice(&[1, 2, 3]).unwrap();
        assert_eq!((l.remove(1), l.remove(5)), (Some(2), None));
        assert_eq!(&l[..], &[1, 3]);
        assert_eq!((l.remove(1), l.remove(0), l.remove(0)), (Some(3), Some(1), None));
    }
}
