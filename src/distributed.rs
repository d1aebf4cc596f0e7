//! Data-parallel training over several processes (`mpirun -np P cnn train ...`), with the
//! same bytes as one process.
//!
//! Each step's global mini-batch of N samples is cut into the blocks of
//! [`GRAD_BLOCK`] samples over which one process already sums its gradients (the last block
//! may be shorter), and each process (rank) takes a contiguous run of whole blocks
//! ([`share`]): rank r of P gets blocks `[r B / P, (r + 1) B / P)` of the B = ceil(N / 4)
//! blocks, so a rank may get none when B < P. Every sum over the batch that one process forms
//! is formed the same way here:
//!
//! ```text
//! conv weight, bias:  one partial sum per block, then sum_b partial_b in block order
//!                     -> the ranks all-gather the partials and every rank adds them in order
//! dense weight, bias: dW = dY^T X over the N samples in one product (its K is N)
//!                     -> the ranks all-gather X and dY, and every rank runs the same product
//! BatchNorm stats:    per block and channel (sum x, sum x^2), added in block order
//!  and its backward:  per block and channel (sum g, sum g xhat), likewise
//!                     -> all-gathered mid-pass: the global batch's statistics (SyncBatchNorm)
//! loss:               one f64 term per sample, added in sample order -> all-gathered
//! dropout, augment:   each sample's draws come from its index in the global batch (or the
//!                     data set), never from the rank
//! ```
//!
//! so every rank ends the step with the gradient one process computes, bit for bit, and
//! takes the same optimiser step: the model is the same on every rank and equal to one
//! process's for any P and any thread count. That is [`Reduce::Exact`]. [`Reduce::Sum`] is
//! what PyTorch's DistributedDataParallel and Horovod do: each rank sums its own blocks and
//! one all-reduce adds the ranks' gradients (BatchNorm's statistics stay global); equal to
//! one process up to rounding.
//!
//! Cost per step, for a gradient of G floats, a global batch of N samples in B blocks and P
//! ranks, each receiving (all-gather) or sending and receiving (ring all-reduce):
//!
//! ```text
//! exact: conv layers   B (K C kh kw + K) floats received  (every block's partial)
//!        dense layers  N (I + O) floats received          (X and dY of every sample)
//!        BatchNorm     4 B C doubles, twice
//! sum:   ring all-reduce of the gradient: 2 (P - 1) / P G floats sent and received
//! ```
//!
//! This module is the only one that talks to MPI (behind the `mpi` feature: [`mpi_world`]);
//! the training code sees a [`Collective`], and one process sees none and pays nothing.

use std::ops::Range;

use crate::layers::conv2d::GRAD_BLOCK;

/// The operations a group of processes training together needs. Every call is collective:
/// each rank makes the same calls in the same order, or the job hangs.
pub trait Collective: Send + Sync {
    /// This process's index, 0 to `size() - 1`.
    fn rank(&self) -> usize;
    /// The number of processes.
    fn size(&self) -> usize;
    /// Every rank's `mine` (rank r gives `counts[r]` values) concatenated in rank order into
    /// `all` (`sum counts` values), on every rank.
    fn all_gather_f32(&self, mine: &[f32], counts: &[usize], all: &mut [f32]);
    /// [`Collective::all_gather_f32`] for f64.
    fn all_gather_f64(&self, mine: &[f64], counts: &[usize], all: &mut [f64]);
    /// [`Collective::all_gather_f32`] for bytes.
    fn all_gather_u8(&self, mine: &[u8], counts: &[usize], all: &mut [u8]);
    /// `buf` becomes the element-wise sum of every rank's `buf` (MPI_Allreduce; the order of
    /// the additions is the MPI library's).
    fn all_reduce_sum_f32(&self, buf: &mut [f32]);
}

/// A group of processes: the one MPI world of the process, or one a test makes.
pub type Group = &'static dyn Collective;

/// The processes a run trains on and how they combine gradients: what the training loop
/// needs to split each batch ([`crate::train::TrainOptions::processes`]).
#[derive(Clone, Copy)]
pub struct Processes {
    pub group: Group,
    pub reduce: Reduce,
}

impl Processes {
    /// This process's part of a global batch of `total` samples.
    pub fn shard(&self, total: usize) -> Shard {
        Shard::of(self.group, total, self.reduce)
    }

    /// Whether any process says yes (each gives `mine`), on every process.
    pub fn any(&self, mine: bool) -> bool {
        any(self.group, mine)
    }
}

impl std::fmt::Debug for Processes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Processes(rank {} of {}, {:?})",
            self.group.rank(),
            self.group.size(),
            self.reduce
        )
    }
}

impl PartialEq for Processes {
    fn eq(&self, other: &Processes) -> bool {
        std::ptr::addr_eq(self.group, other.group) && self.reduce == other.reduce
    }
}

/// How the ranks combine their gradients (`--reduce`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Reduce {
    /// Gather every block's partial sums and add them in one process's order: the same
    /// bytes as one process.
    #[default]
    Exact,
    /// Each rank's own sum, then one all-reduce: one process's result up to rounding.
    Sum,
}

/// The samples of a global batch of `total` that rank `rank` of `ranks` computes: whole
/// blocks of [`GRAD_BLOCK`], contiguous, rank 0 first (see the module doc). Empty when the
/// batch has fewer blocks than there are ranks and this rank gets none.
pub fn share(total: usize, ranks: usize, rank: usize) -> Range<usize> {
    let blocks = total.div_ceil(GRAD_BLOCK);
    let ranks = ranks.max(1);
    let lo = rank * blocks / ranks;
    let hi = (rank + 1) * blocks / ranks;
    (lo * GRAD_BLOCK).min(total)..(hi * GRAD_BLOCK).min(total)
}

/// Where this process's samples sit in the step's global batch, and the group it merges its
/// sums with; the default is a whole batch in one process. Given to every layer with its
/// [`crate::layers::Pass`].
#[derive(Clone, Copy, Default)]
pub struct Shard {
    group: Option<Group>,
    /// Index in the global batch of this process's first sample.
    pub first: usize,
    /// The global batch's size N (this process's batch when it is not split).
    total: usize,
    pub reduce: Reduce,
}

impl std::fmt::Debug for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.group {
            None => write!(f, "Shard(whole batch)"),
            Some(g) => write!(
                f,
                "Shard(rank {} of {}, from sample {} of {}, {:?})",
                g.rank(),
                g.size(),
                self.first,
                self.total,
                self.reduce
            ),
        }
    }
}

impl PartialEq for Shard {
    fn eq(&self, other: &Shard) -> bool {
        let same_group = match (self.group, other.group) {
            (None, None) => true,
            (Some(a), Some(b)) => std::ptr::addr_eq(a, b),
            _ => false,
        };
        same_group
            && self.first == other.first
            && self.total == other.total
            && self.reduce == other.reduce
    }
}

impl Eq for Shard {}

impl Shard {
    /// This rank's part of a global batch of `total` samples in `group`.
    pub fn of(group: Group, total: usize, reduce: Reduce) -> Shard {
        let mine = share(total, group.size(), group.rank());
        Shard {
            group: Some(group),
            first: mine.start,
            total,
            reduce,
        }
    }

    /// Whether the batch is split over processes.
    pub fn is_split(&self) -> bool {
        self.group.is_some()
    }

    /// Whether the batch is split and its gradient sums are gathered in one process's order
    /// ([`Reduce::Exact`]).
    pub fn exact(&self) -> bool {
        self.group.is_some() && self.reduce == Reduce::Exact
    }

    /// The global batch's size, given this process's `n` samples.
    pub fn total(&self, n: usize) -> usize {
        if self.group.is_some() {
            self.total
        } else {
            n
        }
    }

    /// This process's samples of a batch of `n` (all of them when it is not split).
    pub fn samples(&self, n: usize) -> Range<usize> {
        match self.group {
            Some(g) => share(self.total, g.size(), g.rank()),
            None => 0..n,
        }
    }

    /// The samples of each rank, in rank order.
    fn ranks(&self, group: Group) -> impl Iterator<Item = Range<usize>> + '_ {
        (0..group.size()).map(move |r| share(self.total, group.size(), r))
    }

    /// Every rank's `per` values per sample, gathered in sample order (N `per` values);
    /// `mine` holds this rank's samples'. Without a split, a copy of `mine`.
    pub fn gather_samples<T: Gatherable>(&self, mine: &[T], per: usize) -> Vec<T> {
        let Some(group) = self.group else {
            return mine.to_vec();
        };
        let counts: Vec<usize> = self.ranks(group).map(|r| r.len() * per).collect();
        let mut all = vec![T::default(); self.total * per];
        T::all_gather(group, mine, &counts, &mut all);
        all
    }

    /// Every rank's partial sums of `per` values per block of [`GRAD_BLOCK`] samples,
    /// gathered in block order (B `per` values); `mine` holds this rank's blocks'. Without
    /// a split, a copy of `mine`.
    pub fn gather_blocks<T: Gatherable>(&self, mine: &[T], per: usize) -> Vec<T> {
        let Some(group) = self.group else {
            return mine.to_vec();
        };
        let counts: Vec<usize> = self
            .ranks(group)
            .map(|r| r.len().div_ceil(GRAD_BLOCK) * per)
            .collect();
        let mut all = vec![T::default(); counts.iter().sum()];
        T::all_gather(group, mine, &counts, &mut all);
        all
    }

    /// In [`Reduce::Sum`]: adds every rank's `grads` in place (one all-reduce).
    pub fn sum_over_ranks(&self, grads: &mut [f32]) {
        if let Some(group) = self.group {
            group.all_reduce_sum_f32(grads);
        }
    }
}

/// The element types [`Shard::gather_blocks`] gathers.
pub trait Gatherable: Copy + Default {
    /// The gather for this type.
    fn all_gather(group: Group, mine: &[Self], counts: &[usize], all: &mut [Self]);
}

impl Gatherable for f32 {
    fn all_gather(group: Group, mine: &[f32], counts: &[usize], all: &mut [f32]) {
        group.all_gather_f32(mine, counts, all)
    }
}

impl Gatherable for f64 {
    fn all_gather(group: Group, mine: &[f64], counts: &[usize], all: &mut [f64]) {
        group.all_gather_f64(mine, counts, all)
    }
}

/// Whether any rank says yes (each rank gives `mine`), on every rank.
pub fn any(group: Group, mine: bool) -> bool {
    let counts = vec![1; group.size()];
    let mut all = vec![0u8; group.size()];
    group.all_gather_u8(&[u8::from(mine)], &counts, &mut all);
    all.iter().any(|&b| b != 0)
}

/// Every rank's `mine` (all of the same length), in rank order.
pub fn gather_equal(group: Group, mine: &[u8]) -> Vec<Vec<u8>> {
    let counts = vec![mine.len(); group.size()];
    let mut all = vec![0u8; mine.len() * group.size()];
    group.all_gather_u8(mine, &counts, &mut all);
    all.chunks(mine.len().max(1)).map(<[u8]>::to_vec).collect()
}

/// Every rank's `mine` (of any length), in rank order.
pub fn gather_bytes(group: Group, mine: &[u8]) -> Vec<Vec<u8>> {
    let lens = gather_equal(group, &(mine.len() as u64).to_le_bytes());
    let counts: Vec<usize> = lens
        .iter()
        .map(|b| u64::from_le_bytes(b[..8].try_into().unwrap_or([0; 8])) as usize)
        .collect();
    let mut all = vec![0u8; counts.iter().sum()];
    group.all_gather_u8(mine, &counts, &mut all);
    let mut out = Vec::with_capacity(counts.len());
    let mut at = 0;
    for c in counts {
        out.push(all[at..at + c].to_vec());
        at += c;
    }
    out
}

/// The size of the MPI job this process was started in, from the launcher's environment
/// (OpenMPI's `OMPI_COMM_WORLD_SIZE`, MPICH's and Slurm's `PMI_SIZE`, PMIx's
/// `PMIX_SIZE`... ), or `None` outside one. A binary built without the `mpi` feature reads
/// it to refuse running as P independent copies.
pub fn launcher_size() -> Option<usize> {
    [
        "OMPI_COMM_WORLD_SIZE",
        "PMI_SIZE",
        "PMIX_SIZE",
        "MV2_COMM_WORLD_SIZE",
        "SLURM_NTASKS",
    ]
    .iter()
    .find_map(|v| std::env::var(v).ok()?.trim().parse().ok())
}

/// This process's rank in the MPI job it was started in, from the launcher's environment,
/// or `None` outside one.
pub fn launcher_rank() -> Option<usize> {
    [
        "OMPI_COMM_WORLD_RANK",
        "PMI_RANK",
        "PMIX_RANK",
        "MV2_COMM_WORLD_RANK",
        "SLURM_PROCID",
    ]
    .iter()
    .find_map(|v| std::env::var(v).ok()?.trim().parse().ok())
}

#[cfg(feature = "mpi")]
pub use self::mpi_world::{mpi_world, MpiWorld};

#[cfg(feature = "mpi")]
mod mpi_world {
    use mpi::datatype::PartitionMut;
    use mpi::traits::*;

    use super::Collective;

    /// The MPI world: every process `mpirun` started. [`mpi_world`] makes it.
    pub struct MpiWorld {
        world: mpi::topology::SimpleCommunicator,
        rank: usize,
        size: usize,
    }

    /// Initialises MPI and returns its world as a [`super::Group`] with the universe, whose
    /// drop finalises MPI (keep it until the process ends); `None` when MPI was initialised
    /// already.
    pub fn mpi_world() -> Option<(mpi::environment::Universe, super::Group)> {
        let (universe, _) = mpi::initialize_with_threading(mpi::Threading::Funneled)?;
        let world = universe.world();
        let (rank, size) = (world.rank() as usize, world.size() as usize);
        let group: super::Group = Box::leak(Box::new(MpiWorld { world, rank, size }));
        Some((universe, group))
    }

    fn displs(counts: &[usize]) -> (Vec<i32>, Vec<i32>) {
        let c: Vec<i32> = counts.iter().map(|&c| c as i32).collect();
        let d = c
            .iter()
            .scan(0i32, |acc, &x| {
                let at = *acc;
                *acc += x;
                Some(at)
            })
            .collect();
        (c, d)
    }

    // SAFETY of Send + Sync: the communicator is used from the training thread only (the
    // collectives are called between parallel sections, never inside them), and MPI is
    // initialised with MPI_THREAD_SINGLE semantics for that one thread.
    unsafe impl Send for MpiWorld {}
    unsafe impl Sync for MpiWorld {}

    impl Collective for MpiWorld {
        fn rank(&self) -> usize {
            self.rank
        }
        fn size(&self) -> usize {
            self.size
        }
        fn all_gather_f32(&self, mine: &[f32], counts: &[usize], all: &mut [f32]) {
            let (c, d) = displs(counts);
            let mut p = PartitionMut::new(all, &c[..], &d[..]);
            self.world.all_gather_varcount_into(mine, &mut p);
        }
        fn all_gather_f64(&self, mine: &[f64], counts: &[usize], all: &mut [f64]) {
            let (c, d) = displs(counts);
            let mut p = PartitionMut::new(all, &c[..], &d[..]);
            self.world.all_gather_varcount_into(mine, &mut p);
        }
        fn all_gather_u8(&self, mine: &[u8], counts: &[usize], all: &mut [u8]) {
            let (c, d) = displs(counts);
            let mut p = PartitionMut::new(all, &c[..], &d[..]);
            self.world.all_gather_varcount_into(mine, &mut p);
        }
        fn all_reduce_sum_f32(&self, buf: &mut [f32]) {
            let send = buf.to_vec();
            self.world
                .all_reduce_into(&send[..], buf, mpi::collective::SystemOperation::sum());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_are_whole_blocks_in_rank_order_and_cover_the_batch() {
        for total in 1..40 {
            for ranks in 1..6 {
                let mut next = 0;
                for r in 0..ranks {
                    let s = share(total, ranks, r);
                    assert_eq!(s.start, next, "{total} {ranks} {r}");
                    assert!(s.start.is_multiple_of(GRAD_BLOCK) || s.is_empty());
                    next = s.end.max(next);
                }
                assert_eq!(next, total);
            }
        }
        assert_eq!(share(9, 3, 2), 8..9);
        assert_eq!(share(2, 2, 0), 0..0);
    }
}
