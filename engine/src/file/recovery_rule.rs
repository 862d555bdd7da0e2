//! The one rule that says what the end of a segment's valid data means
//! (`docs/format.md`, "Recovery decisions"): the normal end of data, a torn last write a
//! restart truncates, a segment whose creation was cut short (a restart removes it), or
//! corruption, which stops the channel from opening.
//!
//! Pure: the caller reads the bytes and says what it found ([`Finding`]); [`verdict`]
//! decides. Recovery (`recovery`) carries the verdict out — truncates, removes, or refuses
//! to open — and the read-only scans of `inspect` and `verify` report it, so a tool's
//! "a restart repairs this" and a restart's behaviour cannot drift apart.
//!
//! The argument behind the table: a writer syncs a segment before it moves to the next,
//! so only a directory's newest segment can hold unsynced bytes. A power loss during the
//! last write round can persist that round's pages in any order, so the tail of the
//! newest segment may hold damage followed by valid records — but only records of that
//! one final round (or of the round right after the last record that survived whole).
//! Valid records of other rounds after damage mean bytes that were synced went bad.
//! With `fsyncPerTransaction = false` acknowledged rounds may be unsynced too, so any
//! damage in the newest segment counts as a torn tail.

/// What a reader found where a segment stops being valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Finding<'a> {
    /// The segment header fails its checks.
    BadHeader {
        /// Some byte after the header's place is not zero.
        data_after_header: bool,
        /// A checkpoint names the segment, which proves its header was synced once.
        named_by_checkpoint: bool,
    },
    /// The records stop at some offset: at a zero length field, at the end of the file,
    /// or at a record that fails its checks.
    RecordsStop(RecordsStop<'a>),
}

/// Where a segment's records stop, and what surrounds that place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecordsStop<'a> {
    /// Nothing but zero bytes (or nothing at all) follows.
    pub(crate) only_zeros_follow: bool,
    /// The segment is the newest of its data directory.
    pub(crate) newest_in_dir: bool,
    /// `fsyncPerTransaction = false`: acknowledged writes may be unsynced.
    pub(crate) tolerate_tail_damage: bool,
    /// The write round of the last valid record before the stop in this segment.
    pub(crate) last_round_before: Option<u32>,
    /// The write rounds of the valid records found after the stop, in file order.
    /// Consulted only when [`later_rounds_matter`] says so: a caller may leave it empty
    /// otherwise rather than search the rest of the file.
    pub(crate) later_rounds: &'a [u32],
}

/// What the place where valid data ends means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The normal end of the written data.
    EndOfData,
    /// A segment whose creation was cut short (no valid header, nothing after it): a
    /// restart removes it, with a warning.
    UnfinishedSegment,
    /// The last unsynced write was cut short: a restart truncates the segment where the
    /// valid data ends, with a warning; nothing acknowledged is lost.
    TornTail,
    /// Damage a restart refuses to pass.
    Corruption(Corruption),
}

/// Why damage is corruption rather than a torn write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Corruption {
    /// The header is invalid and data follows it.
    BadHeaderBeforeData,
    /// The header is invalid and nothing follows it, but a checkpoint names the segment:
    /// its contents were lost.
    BadHeaderOfCheckpointedSegment,
    /// Damage in a segment older than its directory's newest, which was synced before
    /// the writer moved on.
    InSyncedSegment,
    /// Valid records of earlier write rounds follow the damage.
    EarlierRoundsFollow,
}

/// Whether the verdict on a [`RecordsStop`] depends on the rounds of the records after
/// the stop: only for damage in a directory's newest segment.
pub(crate) fn later_rounds_matter(only_zeros_follow: bool, newest_in_dir: bool) -> bool {
    !only_zeros_follow && newest_in_dir
}

/// Decides what a finding means (the table in `docs/format.md`, "Recovery decisions").
pub(crate) fn verdict(finding: &Finding<'_>) -> Verdict {
    match *finding {
        Finding::BadHeader {
            data_after_header: true,
            ..
        } => Verdict::Corruption(Corruption::BadHeaderBeforeData),
        Finding::BadHeader {
            named_by_checkpoint: true,
            ..
        } => Verdict::Corruption(Corruption::BadHeaderOfCheckpointedSegment),
        Finding::BadHeader { .. } => Verdict::UnfinishedSegment,
        Finding::RecordsStop(stop) => records_stop_verdict(&stop),
    }
}

fn records_stop_verdict(stop: &RecordsStop<'_>) -> Verdict {
    if stop.only_zeros_follow {
        return Verdict::EndOfData;
    }
    if !stop.newest_in_dir {
        return Verdict::Corruption(Corruption::InSyncedSegment);
    }
    let torn = match stop.later_rounds.first() {
        None => true,
        Some(_) if stop.tolerate_tail_damage => true,
        Some(&final_round) => {
            stop.later_rounds.iter().all(|&round| round == final_round)
                && stop.last_round_before.is_none_or(|round| {
                    round == final_round || round.wrapping_add(1) == final_round
                })
        }
    };
    if torn {
        Verdict::TornTail
    } else {
        Verdict::Corruption(Corruption::EarlierRoundsFollow)
    }
}

#[cfg(test)]
mod tests {
    //! One test per row of the table in `docs/format.md`, "Recovery decisions", plus the
    //! edges of the round rule.

    use super::*;

    fn records_stop(
        newest_in_dir: bool,
        last_round_before: Option<u32>,
        later_rounds: &[u32],
    ) -> Verdict {
        verdict(&Finding::RecordsStop(RecordsStop {
            only_zeros_follow: false,
            newest_in_dir,
            tolerate_tail_damage: false,
            last_round_before,
            later_rounds,
        }))
    }

    #[test]
    fn only_zeros_after_the_valid_data_is_the_end_of_data_in_any_segment() {
        for newest_in_dir in [false, true] {
            let stop = RecordsStop {
                only_zeros_follow: true,
                newest_in_dir,
                tolerate_tail_damage: false,
                last_round_before: Some(3),
                later_rounds: &[],
            };
            assert_eq!(verdict(&Finding::RecordsStop(stop)), Verdict::EndOfData);
        }
    }

    #[test]
    fn damage_in_a_segment_older_than_the_newest_is_corruption() {
        assert_eq!(
            records_stop(false, Some(3), &[]),
            Verdict::Corruption(Corruption::InSyncedSegment)
        );
        assert_eq!(
            records_stop(false, Some(3), &[3]),
            Verdict::Corruption(Corruption::InSyncedSegment)
        );
    }

    #[test]
    fn damage_in_an_older_segment_is_corruption_even_when_tail_damage_is_tolerated() {
        let stop = RecordsStop {
            only_zeros_follow: false,
            newest_in_dir: false,
            tolerate_tail_damage: true,
            last_round_before: None,
            later_rounds: &[],
        };
        assert_eq!(
            verdict(&Finding::RecordsStop(stop)),
            Verdict::Corruption(Corruption::InSyncedSegment)
        );
    }

    #[test]
    fn damage_in_the_newest_segment_with_no_valid_record_after_it_is_a_torn_tail() {
        assert_eq!(records_stop(true, Some(7), &[]), Verdict::TornTail);
        assert_eq!(records_stop(true, None, &[]), Verdict::TornTail);
    }

    #[test]
    fn records_of_the_last_good_round_after_the_damage_are_a_torn_tail() {
        assert_eq!(records_stop(true, Some(7), &[7, 7]), Verdict::TornTail);
    }

    #[test]
    fn records_of_the_round_after_the_last_good_one_are_a_torn_tail() {
        assert_eq!(records_stop(true, Some(7), &[8]), Verdict::TornTail);
        assert_eq!(records_stop(true, Some(u32::MAX), &[0]), Verdict::TornTail);
    }

    #[test]
    fn records_after_damage_at_the_start_of_the_newest_segment_are_a_torn_tail_if_of_one_round() {
        assert_eq!(records_stop(true, None, &[4, 4, 4]), Verdict::TornTail);
        assert_eq!(
            records_stop(true, None, &[4, 5]),
            Verdict::Corruption(Corruption::EarlierRoundsFollow)
        );
    }

    #[test]
    fn records_of_several_rounds_after_the_damage_are_corruption() {
        assert_eq!(
            records_stop(true, Some(7), &[8, 9]),
            Verdict::Corruption(Corruption::EarlierRoundsFollow)
        );
        assert_eq!(
            records_stop(true, Some(7), &[7, 8]),
            Verdict::Corruption(Corruption::EarlierRoundsFollow)
        );
    }

    #[test]
    fn records_of_a_round_two_or_more_after_the_last_good_one_are_corruption() {
        assert_eq!(
            records_stop(true, Some(7), &[9]),
            Verdict::Corruption(Corruption::EarlierRoundsFollow)
        );
        assert_eq!(
            records_stop(true, Some(7), &[6]),
            Verdict::Corruption(Corruption::EarlierRoundsFollow)
        );
    }

    #[test]
    fn without_fsync_per_transaction_any_damage_in_the_newest_segment_is_a_torn_tail() {
        let stop = RecordsStop {
            only_zeros_follow: false,
            newest_in_dir: true,
            tolerate_tail_damage: true,
            last_round_before: Some(1),
            later_rounds: &[2, 5, 9],
        };
        assert_eq!(verdict(&Finding::RecordsStop(stop)), Verdict::TornTail);
    }

    #[test]
    fn an_invalid_header_with_nothing_after_it_is_an_unfinished_segment() {
        let finding = Finding::BadHeader {
            data_after_header: false,
            named_by_checkpoint: false,
        };
        assert_eq!(verdict(&finding), Verdict::UnfinishedSegment);
    }

    #[test]
    fn an_invalid_header_with_data_after_it_is_corruption() {
        for named_by_checkpoint in [false, true] {
            let finding = Finding::BadHeader {
                data_after_header: true,
                named_by_checkpoint,
            };
            assert_eq!(
                verdict(&finding),
                Verdict::Corruption(Corruption::BadHeaderBeforeData)
            );
        }
    }

    #[test]
    fn an_empty_segment_with_an_invalid_header_that_a_checkpoint_names_is_corruption() {
        let finding = Finding::BadHeader {
            data_after_header: false,
            named_by_checkpoint: true,
        };
        assert_eq!(
            verdict(&finding),
            Verdict::Corruption(Corruption::BadHeaderOfCheckpointedSegment)
        );
    }

    #[test]
    fn later_rounds_matter_only_for_damage_in_the_newest_segment() {
        assert!(later_rounds_matter(false, true));
        assert!(!later_rounds_matter(true, true));
        assert!(!later_rounds_matter(false, false));
        assert!(!later_rounds_matter(true, false));
    }
}
