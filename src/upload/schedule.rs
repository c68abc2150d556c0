//! The part-size schedule: which size part N has, where it starts, how large a file can get.
//!
//! A fixed part size caps the object at part_size × 10,000 (78 GiB for 8 MiB, where
//! Mountpoint stops). Here the first 500 parts have the configured size and every
//! following tier of 500 parts doubles it, up to a ceiling: files up to 4 GiB keep the
//! configured size (cheap retries, parallel parts), and 10,000 parts still reach S3's
//! 5 TiB object limit. The ceiling is the smaller of 5 GiB (S3's part limit) and half
//! the memory budget, so that one part can upload while the next one fills.

pub(crate) const MIN_PART_SIZE: u64 = 5 << 20;
pub(crate) const MAX_PART_SIZE: u64 = 5 << 30;
pub(crate) const MAX_PARTS: u32 = 10_000;
pub(crate) const MAX_OBJECT_SIZE: u64 = 5 << 40;
/// Parts per tier of equal size; each tier doubles the previous tier's size.
pub(crate) const PARTS_PER_TIER: u32 = 500;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PartSchedule {
    first_part_size: u64,
    largest_part_size: u64,
    /// [`PARTS_PER_TIER`], lower only in tests that need a grown part in a small file.
    parts_per_tier: u32,
}

impl PartSchedule {
    /// A schedule starting at `first_part_size` whose parts fit twice into `memory_budget`.
    pub(crate) fn new(first_part_size: u64, memory_budget: u64) -> Result<Self, String> {
        if first_part_size < MIN_PART_SIZE {
            return Err(format!(
                "part size {} is below S3's minimum of 5MiB",
                crate::size::format_size(first_part_size)
            ));
        }
        if first_part_size > MAX_PART_SIZE {
            return Err(format!(
                "part size {} is above S3's maximum of 5GiB",
                crate::size::format_size(first_part_size)
            ));
        }
        if memory_budget < 2 * first_part_size {
            return Err(format!(
                "--max-memory {} must hold at least two parts of --part-size {}",
                crate::size::format_size(memory_budget),
                crate::size::format_size(first_part_size)
            ));
        }
        Ok(Self {
            first_part_size,
            largest_part_size: (memory_budget / 2).clamp(first_part_size, MAX_PART_SIZE),
            parts_per_tier: PARTS_PER_TIER,
        })
    }

    /// The same schedule with tiers of `parts` parts (at least 1).
    pub(crate) fn with_parts_per_tier(self, parts: u32) -> Self {
        Self {
            parts_per_tier: parts.max(1),
            ..self
        }
    }

    /// Size of part `part_number` (1-based) when it is not the last part.
    pub(crate) fn part_size(&self, part_number: u32) -> u64 {
        let tier = (part_number.max(1) - 1) / self.parts_per_tier;
        // Past 33 doublings every size is above the ceiling anyway.
        let grown = self.first_part_size.saturating_mul(1u64 << tier.min(33));
        grown.min(self.largest_part_size)
    }

    /// Offset of the first byte of part `part_number` (1-based); for 10,001 the end of the last.
    pub(crate) fn part_start(&self, part_number: u32) -> u64 {
        let index = part_number.max(1) - 1;
        let mut start = 0u64;
        let mut tier_first = 0u32;
        while tier_first + self.parts_per_tier <= index {
            start += u64::from(self.parts_per_tier) * self.part_size(tier_first + 1);
            tier_first += self.parts_per_tier;
        }
        start + u64::from(index - tier_first) * self.part_size(tier_first + 1)
    }

    /// The part that holds byte `offset`.
    #[cfg(test)]
    fn part_containing(&self, offset: u64) -> u32 {
        let mut start = 0u64;
        let mut tier_first = 0u32;
        loop {
            let size = self.part_size(tier_first + 1);
            let tier_bytes = u64::from(self.parts_per_tier) * size;
            if offset < start + tier_bytes || tier_first + self.parts_per_tier >= MAX_PARTS {
                return tier_first + 1 + ((offset - start) / size) as u32;
            }
            start += tier_bytes;
            tier_first += self.parts_per_tier;
        }
    }

    /// The largest file this schedule can upload within 10,000 parts (at most 5 TiB).
    pub(crate) fn max_file_size(&self) -> u64 {
        self.part_start(MAX_PARTS + 1).min(MAX_OBJECT_SIZE)
    }

    /// The largest part buffer a writer needs: the memory one huge file implies per part.
    #[cfg(test)]
    fn largest_part_size(&self) -> u64 {
        self.part_size(MAX_PARTS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;

    fn default_schedule() -> PartSchedule {
        PartSchedule::new(8 * MIB, 2 * GIB).expect("default settings are valid")
    }

    #[test]
    fn default_settings_reach_five_tib_within_ten_thousand_parts() {
        let schedule = default_schedule();
        assert_eq!(schedule.max_file_size(), MAX_OBJECT_SIZE);
        assert!(schedule.part_start(MAX_PARTS + 1) >= MAX_OBJECT_SIZE);
    }

    #[test]
    fn files_up_to_four_gib_keep_the_configured_part_size() {
        let schedule = default_schedule();
        assert_eq!(schedule.part_size(1), 8 * MIB);
        assert_eq!(schedule.part_size(500), 8 * MIB);
        assert_eq!(schedule.part_start(501), 4000 * MIB);
        assert_eq!(schedule.part_size(501), 16 * MIB);
    }

    #[test]
    fn parts_stay_between_five_mib_and_five_gib() {
        for (first, budget) in [
            (5 * MIB, 10 * MIB),
            (8 * MIB, 2 * GIB),
            (64 * MIB, 64 * GIB),
        ] {
            let schedule = PartSchedule::new(first, budget).expect("valid");
            for part in 1..=MAX_PARTS {
                let size = schedule.part_size(part);
                assert!(size >= MIN_PART_SIZE, "part {part} is {size}");
                assert!(size <= MAX_PART_SIZE, "part {part} is {size}");
                assert!(
                    size <= budget / 2,
                    "part {part} does not fit twice in the budget"
                );
            }
        }
    }

    #[test]
    fn part_start_and_part_containing_agree() {
        let schedule = default_schedule();
        for part in [1, 2, 499, 500, 501, 1000, 1001, 4321, 9999, 10_000] {
            let start = schedule.part_start(part);
            assert_eq!(
                schedule.part_start(part + 1),
                start + schedule.part_size(part)
            );
            assert_eq!(schedule.part_containing(start), part);
            assert_eq!(
                schedule.part_containing(start + schedule.part_size(part) - 1),
                part
            );
        }
    }

    #[test]
    fn a_small_budget_lowers_the_ceiling_and_the_maximum_file_size() {
        let schedule = PartSchedule::new(8 * MIB, 32 * MIB).expect("valid");
        assert_eq!(schedule.largest_part_size(), 16 * MIB);
        // 500 parts of 8 MiB, then 9,500 of 16 MiB: still twice Mountpoint's 78 GiB.
        assert_eq!(schedule.max_file_size(), 500 * 8 * MIB + 9500 * 16 * MIB);
    }

    #[test]
    fn invalid_settings_are_rejected_with_a_reason() {
        assert!(
            PartSchedule::new(4 * MIB, GIB)
                .unwrap_err()
                .contains("minimum")
        );
        assert!(
            PartSchedule::new(6 * GIB, 64 * GIB)
                .unwrap_err()
                .contains("maximum")
        );
        assert!(
            PartSchedule::new(8 * MIB, 8 * MIB)
                .unwrap_err()
                .contains("two parts")
        );
    }
}
