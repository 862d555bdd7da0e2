//! The queue every channel type keeps its takeable events in: put-commit order, kept
//! whatever order rolled-back takes come back in.
//!
//! ## The problem
//! Several transactions may hold taken events at once. Say A took events 1–2 and B took
//! 3–5 while 6 and 7 stay queued. Returning a rollback's events to the *head* gives
//! 1 2 3 4 5 6 7 only when B rolls back first; when A goes first the queue ends up
//! 3 4 5 1 2 6 7. The promise is put-commit order whatever order transactions roll back
//! in, so a returned event must go back to *its place*.
//!
//! ## The design
//! Every event gets an *order key* when it joins the queue at commit: a number that grows
//! with every event, so keys follow put-commit order. A take hands the key out with the
//! event; a rollback hands it back, and the event is merged in before the first queued
//! event with a larger key. Because takes only ever remove the head, every event held
//! by an open transaction has a smaller key than every event that was never taken: a
//! returned event lands among the (few) returned events near the head, never deep in
//! the queue.
//!
//! Keys are kept run-length encoded beside the items, not one per item: a file channel
//! keeps millions of 12-byte event pointers queued, and a key each would add two thirds
//! to that. Events appended by commits have consecutive keys and form one run; only
//! returned events that landed between gaps (events still held, or taken for good) add
//! runs, and those are consumed as the head moves past them.
//!
//! ```text
//!   items:  [p1] [p2] [p6] [p7] [p8] [p9]
//!   runs:   (first_key 1, len 2) (first_key 6, len 4)     ← 3, 4, 5 are held by B
//! ```
//!
//! Costs: appending and taking the head are O(1); returning k events whose largest key
//! has m queued events ahead of it is O(m + k) (a merge of the two sorted runs).

use std::collections::VecDeque;

/// A run of consecutive order keys: the `len` items from its place on have the keys
/// `first_key`, `first_key + 1`, ….
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct KeyRun {
    first_key: u64,
    len: u64,
}

impl KeyRun {
    /// The key after this run's last.
    fn end_key(&self) -> u64 {
        self.first_key + self.len
    }
}

/// Items in ascending order of their order keys (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OrderedQueue<T> {
    items: VecDeque<T>,
    /// The items' keys, from the head; the runs' lengths add up to `items.len()`.
    runs: VecDeque<KeyRun>,
    /// The key the next appended item gets: above every key handed out so far.
    next_key: u64,
}

impl<T> Default for OrderedQueue<T> {
    fn default() -> Self {
        OrderedQueue {
            items: VecDeque::new(),
            runs: VecDeque::new(),
            next_key: 0,
        }
    }
}

impl<T> From<Vec<T>> for OrderedQueue<T> {
    /// The items in the order given, with keys from 0 (reusing the vector's allocation).
    fn from(items: Vec<T>) -> Self {
        let len = items.len() as u64;
        let mut queue = OrderedQueue {
            items: items.into(),
            runs: VecDeque::new(),
            next_key: len,
        };
        if len > 0 {
            queue.runs.push_back(KeyRun { first_key: 0, len });
        }
        queue
    }
}

impl<T> OrderedQueue<T> {
    /// Items queued.
    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether nothing is queued.
    pub(crate) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The head item, the next to be taken.
    pub(crate) fn front(&self) -> Option<&T> {
        self.items.front()
    }

    /// The head item's key.
    pub(crate) fn front_key(&self) -> Option<u64> {
        self.runs.front().map(|run| run.first_key)
    }

    /// The newest item.
    pub(crate) fn back(&self) -> Option<&T> {
        self.items.back()
    }

    /// The items from the head, in key order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> {
        self.items.iter()
    }

    /// The items from the head with their keys.
    pub(crate) fn iter_keyed(&self) -> impl Iterator<Item = (u64, &T)> {
        self.runs
            .iter()
            .flat_map(|run| run.first_key..run.end_key())
            .zip(self.items.iter())
    }

    /// Appends an item after every other, with the next key; returns that key.
    pub(crate) fn push_back(&mut self, item: T) -> u64 {
        let key = self.next_key;
        self.push_back_keyed(key, item);
        key
    }

    /// Appends items after every other, with consecutive keys.
    pub(crate) fn extend(&mut self, items: impl IntoIterator<Item = T>) {
        for item in items {
            self.push_back(item);
        }
    }

    /// Appends an item with a key chosen by the caller (queues that share one sequence
    /// of keys): it must be above every key this queue handed out.
    pub(crate) fn push_back_keyed(&mut self, key: u64, item: T) {
        debug_assert!(key >= self.next_key, "key {key} below {}", self.next_key);
        match self.runs.back_mut() {
            Some(run) if run.end_key() == key => run.len += 1,
            _ => self.runs.push_back(KeyRun {
                first_key: key,
                len: 1,
            }),
        }
        self.items.push_back(item);
        self.next_key = key + 1;
    }

    /// Removes the head item, with its key.
    pub(crate) fn pop_front(&mut self) -> Option<(u64, T)> {
        let item = self.items.pop_front()?;
        let run = self.runs.front_mut().expect("runs cover every item");
        let key = run.first_key;
        run.first_key += 1;
        run.len -= 1;
        if run.len == 0 {
            self.runs.pop_front();
        }
        Some((key, item))
    }

    /// Puts an item before every other; its key must be below the head's.
    fn push_front_keyed(&mut self, key: u64, item: T) {
        match self.runs.front_mut() {
            Some(run) if run.first_key == key + 1 => {
                run.first_key = key;
                run.len += 1;
            }
            _ => {
                debug_assert!(self.front_key().is_none_or(|head| key < head));
                self.runs.push_front(KeyRun {
                    first_key: key,
                    len: 1,
                });
            }
        }
        self.items.push_front(item);
    }

    /// Returns taken items (with the keys they were taken with, in any order) to their
    /// places: afterwards the queue is in key order again, as if they had never been
    /// taken.
    pub(crate) fn return_taken(&mut self, mut returned: Vec<(u64, T)>) {
        // Usually sorted already: one transaction's takes come from the head in order.
        if !returned.is_sorted_by_key(|(key, _)| *key) {
            returned.sort_unstable_by_key(|(key, _)| *key);
        }
        let Some(&(largest_key, _)) = returned.last() else {
            return;
        };
        // The queued items that belong ahead of some returned one, then a merge of both
        // sorted lists, put back in front from the end.
        let mut ahead = Vec::new();
        while self.front_key().is_some_and(|key| key < largest_key) {
            ahead.push(self.pop_front().expect("a head key means a head item"));
        }
        let mut ahead = ahead.into_iter().rev().peekable();
        let mut returned = returned.into_iter().rev().peekable();
        loop {
            let take_ahead = match (ahead.peek(), returned.peek()) {
                (Some((ahead_key, _)), Some((returned_key, _))) => ahead_key > returned_key,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            let (key, item) = if take_ahead {
                ahead.next()
            } else {
                returned.next()
            }
            .expect("peeked");
            self.push_front_keyed(key, item);
        }
    }
}

/// Merges two sequences that are each in ascending key order into one, by key: how a
/// channel lists its events held by open transactions and its queued ones in put-commit
/// order (for a checkpoint).
pub(crate) fn merge_by_key<'a, T: 'a>(
    first: impl Iterator<Item = (u64, &'a T)>,
    second: impl Iterator<Item = (u64, &'a T)>,
) -> impl Iterator<Item = &'a T> {
    let mut first = first.peekable();
    let mut second = second.peekable();
    std::iter::from_fn(move || {
        let from_first = match (first.peek(), second.peek()) {
            (Some((first_key, _)), Some((second_key, _))) => first_key < second_key,
            (Some(_), None) => true,
            (None, _) => false,
        };
        let next = if from_first {
            first.next()
        } else {
            second.next()
        };
        next.map(|(_, item)| item)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn contents(queue: &OrderedQueue<u32>) -> Vec<u32> {
        queue.iter().copied().collect()
    }

    fn take(queue: &mut OrderedQueue<u32>, count: usize) -> Vec<(u64, u32)> {
        (0..count).map_while(|_| queue.pop_front()).collect()
    }

    #[test]
    fn two_rollbacks_restore_put_order_whichever_comes_first() {
        for a_first in [true, false] {
            let mut queue = OrderedQueue::default();
            queue.extend(1..=7u32);
            let a = take(&mut queue, 2);
            let b = take(&mut queue, 3);
            if a_first {
                queue.return_taken(a);
                queue.return_taken(b);
            } else {
                queue.return_taken(b);
                queue.return_taken(a);
            }
            assert_eq!(
                contents(&queue),
                (1..=7).collect::<Vec<_>>(),
                "A first: {a_first}"
            );
        }
    }

    #[test]
    fn a_returned_event_goes_behind_an_earlier_one_returned_before_it() {
        let mut queue = OrderedQueue::default();
        queue.extend(1..=6u32);
        let a = take(&mut queue, 2); // 1, 2
        let b = take(&mut queue, 1); // 3
        queue.return_taken(a);
        let c = take(&mut queue, 1); // 1 again
        queue.return_taken(b);
        assert_eq!(contents(&queue), [2, 3, 4, 5, 6]);
        queue.return_taken(c);
        assert_eq!(contents(&queue), [1, 2, 3, 4, 5, 6]);
        assert_eq!(queue.runs.len(), 1, "runs merge back into one");
    }

    #[test]
    fn keys_survive_gaps_left_by_committed_takes() {
        let mut queue = OrderedQueue::default();
        queue.extend(1..=6u32);
        let a = take(&mut queue, 2);
        let _committed = take(&mut queue, 1); // 3 is gone for good
        queue.return_taken(a);
        queue.push_back(7);
        assert_eq!(contents(&queue), [1, 2, 4, 5, 6, 7]);
        let keys: Vec<u64> = queue.iter_keyed().map(|(key, _)| key).collect();
        assert_eq!(keys, [0, 1, 3, 4, 5, 6]);
    }

    #[test]
    fn merge_by_key_interleaves_two_sorted_lists() {
        let held = [(1u64, 'b'), (4, 'e')];
        let queued = [(0u64, 'a'), (2, 'c'), (3, 'd'), (5, 'f')];
        let merged: String = merge_by_key(
            held.iter().map(|(key, item)| (*key, item)),
            queued.iter().map(|(key, item)| (*key, item)),
        )
        .collect();
        assert_eq!(merged, "abcdef");
    }

    proptest! {
        /// Any interleaving of appends, takes by several transactions, commits and
        /// rollbacks leaves the queue holding exactly the events neither committed nor
        /// held, in put order.
        #[test]
        fn the_queue_is_always_in_put_order(ops in proptest::collection::vec((0u8..4, 0usize..4, 1usize..4), 1..200)) {
            let mut queue = OrderedQueue::default();
            let mut next_event = 0u32;
            let mut held: Vec<Vec<(u64, u32)>> = vec![Vec::new(); 4];
            let mut gone = std::collections::BTreeSet::new();
            for (op, transaction, count) in ops {
                match op {
                    0 => for _ in 0..count {
                        queue.push_back(next_event);
                        next_event += 1;
                    },
                    1 => held[transaction].extend(take(&mut queue, count)),
                    2 => gone.extend(held[transaction].drain(..).map(|(_, event)| event)),
                    _ => queue.return_taken(std::mem::take(&mut held[transaction])),
                }
                let still_held: std::collections::BTreeSet<u32> =
                    held.iter().flatten().map(|(_, event)| *event).collect();
                let expected: Vec<u32> = (0..next_event)
                    .filter(|event| !gone.contains(event) && !still_held.contains(event))
                    .collect();
                prop_assert_eq!(contents(&queue), expected);
                let keys: Vec<u64> = queue.iter_keyed().map(|(key, _)| key).collect();
                let items: Vec<u64> = queue.iter().map(|event| u64::from(*event)).collect();
                prop_assert_eq!(keys, items, "each event keeps the key it was appended with");
            }
        }
    }
}
