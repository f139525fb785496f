//! UDP segmentation offload (GSO, UDP_SEGMENT) and receive coalescing (GRO,
//! UDP_GRO): the pure parts, kept apart from the syscalls so they are tested
//! on their own.
//!
//! GSO: one sendmsg carries a run of datagrams of equal size (the last may
//! be shorter) as several iovecs, and the kernel cuts them apart, so a 64 KB
//! TCP burst through the tunnel leaves as one syscall instead of 45.
//! GRO: the kernel hands over several datagrams of one flow glued together
//! with their size in a control message; they are split back here.
use libc::c_int;

pub const SOL_UDP: c_int = 17;
pub const UDP_SEGMENT: c_int = 103;
pub const UDP_GRO: c_int = 104;
/// Datagrams one GSO send may carry (the kernel's UDP_MAX_SEGMENTS is 64 on
/// older kernels).
pub const MAX_GSO_SEGMENTS: usize = 64;
/// Payload bytes one GSO send may carry (one IP packet's worth, minus room
/// for headers).
pub const MAX_GSO_BYTES: usize = 65_000;

/// Splits datagrams of lengths `lens` into GSO groups: each is a run of
/// equal lengths, possibly ending with one shorter datagram, within the
/// segment and byte limits. Writes `(start, end)` pairs; returns how many.
pub fn gso_groups(lens: &[usize], out: &mut [(usize, usize)]) -> usize {
    let mut groups = 0;
    let mut i = 0;
    while i < lens.len() && groups < out.len() {
        let seg = lens[i];
        let mut total = seg;
        let mut j = i + 1;
        while j < lens.len()
            && j - i < MAX_GSO_SEGMENTS
            && lens[j] <= seg
            && total + lens[j] <= MAX_GSO_BYTES
            && seg > 0
        {
            total += lens[j];
            j += 1;
            if lens[j - 1] < seg {
                break; // a shorter datagram ends the run
            }
        }
        out[groups] = (i, j);
        groups += 1;
        i = j;
    }
    groups
}

/// Where the segments of one coalesced datagram of `len` bytes with GRO
/// segment size `seg` lie: `(offset, length)` pairs.
pub fn gro_segments(len: usize, seg: usize) -> impl Iterator<Item = (usize, usize)> {
    let seg = if seg == 0 || seg > len {
        len.max(1)
    } else {
        seg
    };
    (0..len)
        .step_by(seg)
        .map(move |off| (off, seg.min(len - off)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn groups(lens: &[usize]) -> Vec<(usize, usize)> {
        let mut out = [(0, 0); 256];
        let n = gso_groups(lens, &mut out);
        out[..n].to_vec()
    }

    #[test]
    fn equal_runs_group_and_a_shorter_tail_joins() {
        assert_eq!(groups(&[1452, 1452, 1452, 600]), vec![(0, 4)]);
        assert_eq!(groups(&[1452, 600, 1452]), vec![(0, 2), (2, 3)]);
        assert_eq!(
            groups(&[600, 1452]),
            vec![(0, 1), (1, 2)],
            "a longer one cannot follow"
        );
        assert_eq!(groups(&[]), vec![]);
        assert_eq!(groups(&[32]), vec![(0, 1)]);
    }

    #[test]
    fn limits_split_long_runs() {
        let lens = vec![1452; 100];
        let g = groups(&lens);
        assert!(g.iter().all(|(s, e)| e - s <= MAX_GSO_SEGMENTS));
        assert!(g
            .iter()
            .all(|(s, e)| lens[*s..*e].iter().sum::<usize>() <= MAX_GSO_BYTES));
        assert_eq!(
            g.first(),
            Some(&(0, 44)),
            "44 x 1452 fits 65,000 bytes, 45 does not"
        );
        assert_eq!(g.last().unwrap().1, 100);
        let small = vec![100; 200];
        assert_eq!(groups(&small)[0], (0, MAX_GSO_SEGMENTS));
    }

    #[test]
    fn gro_segments_cover_the_datagram() {
        let s: Vec<_> = gro_segments(3000, 1400).collect();
        assert_eq!(s, vec![(0, 1400), (1400, 1400), (2800, 200)]);
        assert_eq!(gro_segments(500, 0).collect::<Vec<_>>(), vec![(0, 500)]);
        assert_eq!(gro_segments(500, 900).collect::<Vec<_>>(), vec![(0, 500)]);
        assert_eq!(gro_segments(0, 0).count(), 0);
    }
}
