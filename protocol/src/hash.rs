//! The channel hash and jump consistent hashing: how a channel finds its broker.
//!
//! `channel_hash` is fixed forever, so every node of every version on every
//! architecture agrees on a channel's owner: FNV-1a 64 over the channel
//! name's UTF-8 bytes, then the SplitMix64 finaliser to spread FNV's weak
//! low bits (jump hashing consumes the key as a random-number seed).
//! Changing either step moves channels between brokers: the golden vectors
//! below exist to make that impossible by accident.

/// FNV-1a 64-bit offset basis and prime.
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// The 64-bit hash of a channel name.
#[must_use]
pub fn channel_hash(channel: &str) -> u64 {
    let mut h = FNV_OFFSET;
    for b in channel.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    splitmix64_finalize(h)
}

fn splitmix64_finalize(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Jump consistent hash (Lamping and Veach, 2014): maps `key` to a bucket in
/// `0..buckets`, moving only ~1/n of keys when a bucket is added or the last
/// one removed. Returns 0 when `buckets` is 0.
#[must_use]
pub fn jump_consistent_hash(mut key: u64, buckets: u32) -> u32 {
    let mut b: i64 = -1;
    let mut j: i64 = 0;
    while j < i64::from(buckets) {
        b = j;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        j = ((b + 1) as f64 * ((1u64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    b.max(0) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Golden vectors: these values are part of the cluster's wire contract
    /// (checked against an independent implementation of the same definition).
    #[test]
    fn channel_hash_golden_vectors() {
        let cases = [
            ("", 0xf52a_15e9_a9b5_e89b_u64),
            ("a", 0x02c0_bdbf_4814_20f8),
            ("room/42", 0xd358_d765_1c6d_2895),
            ("user/alice", 0xf625_2a8e_4fc8_1ba1),
            ("ü/日本", 0xf2ac_7719_c1b0_8fcb),
        ];
        for (channel, want) in cases {
            assert_eq!(channel_hash(channel), want, "{channel:?} = {:#x}", channel_hash(channel));
        }
    }

    /// Values computed with an independent port of the paper's C++ code.
    #[test]
    fn jump_hash_golden_vectors() {
        assert_eq!(jump_consistent_hash(0, 1), 0);
        assert_eq!(jump_consistent_hash(1, 0), 0);
        let cases = [(1u64, 10u32, 6u32), (0xdead_beef, 100, 87), (u64::MAX, 1000, 313), (42, 7, 2), (256, 1024, 520)];
        for (key, n, want) in cases {
            assert_eq!(jump_consistent_hash(key, n), want, "key {key:#x} n {n}");
        }
    }

    #[test]
    fn jump_hash_moves_only_to_the_new_bucket() {
        for key in 0..10_000u64 {
            let k = channel_hash(&key.to_string());
            let before = jump_consistent_hash(k, 7);
            let after = jump_consistent_hash(k, 8);
            assert!(after == before || after == 7, "key {key} moved {before} -> {after}");
        }
    }

    #[test]
    fn jump_hash_spreads_evenly() {
        let mut counts = [0u32; 5];
        for key in 0..50_000u64 {
            counts[jump_consistent_hash(channel_hash(&format!("ch/{key}")), 5) as usize] += 1;
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "{counts:?}");
        }
    }
}
