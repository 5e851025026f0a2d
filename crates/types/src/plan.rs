//! How a multipart upload's file is cut into parts.

const MIB: u64 = 1024 * 1024;

/// How a file is cut: every part but the last has exactly `part_size` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartPlan {
    pub size: u64,
    pub part_size: u64,
    pub part_count: i32,
}

impl PartPlan {
    /// `preferred` bytes a part, raised (in whole MiB) until the file fits in `max_parts`.
    pub fn new(size: u64, preferred: u64, max_parts: u32) -> Self {
        let needed = size.div_ceil(u64::from(max_parts.max(1)));
        let part_size = if needed > preferred {
            needed.div_ceil(MIB) * MIB
        } else {
            preferred
        };
        let part_count = i32::try_from(size.div_ceil(part_size)).unwrap_or(i32::MAX);
        Self {
            size,
            part_size,
            part_count,
        }
    }

    /// Where one part starts in the file.
    pub fn part_offset(&self, part_number: i32) -> u64 {
        self.part_size * u64::try_from(part_number - 1).unwrap_or(0)
    }

    /// The exact length of one part.
    pub fn part_len(&self, part_number: i32) -> u64 {
        if part_number < self.part_count {
            self.part_size
        } else {
            self.size - self.part_size * u64::try_from(self.part_count - 1).unwrap_or(0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_equal_but_the_last_and_fit_max_parts() {
        let plan = PartPlan::new(40 * MIB + 3, 5 * MIB, 10_000);
        assert_eq!((plan.part_size, plan.part_count), (5 * MIB, 9));
        assert_eq!(plan.part_len(1), 5 * MIB);
        assert_eq!(plan.part_len(9), 3);

        let exact = PartPlan::new(40 * MIB, 5 * MIB, 10_000);
        assert_eq!((exact.part_count, exact.part_len(8)), (8, 5 * MIB));

        // 5 GiB in at most 100 parts: parts grow to a whole number of MiB.
        let big = PartPlan::new(5 * 1024 * MIB, 16 * MIB, 100);
        assert!(big.part_count <= 100);
        assert_eq!(big.part_size % MIB, 0);
        assert!(big.part_size * 100 >= big.size);
        let total: u64 = (1..=big.part_count).map(|n| big.part_len(n)).sum();
        assert_eq!(total, big.size);
    }
}
