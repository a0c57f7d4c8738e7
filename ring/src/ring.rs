//! Creating and opening rings: the builder, and the handle every endpoint attaches through.

use core::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::channel::{Consumer, Producer};
use crate::endpoint::Shared;
use crate::error::{AttachError, ConfigError, CreateError, OpenError};
use crate::kind::{Kind, Role};
use crate::layout::{self, Geometry, HEADER_SIZE, IdentityFields, MAGIC, RingMem};
use crate::registry::{self, EndpointInfo, EndpointWord};
use crate::segment::{self, Backing, Cleanup, MapOptions, Segment, SysvKey};
use crate::sync::{Ordering, barrier};
use crate::wait::WaitOptions;
use crate::{mpmc, records, spsc};

/// How long an opener waits, by default, for a creator to finish building the header.
pub const DEFAULT_INIT_TIMEOUT: Duration = Duration::from_secs(2);

/// Configures, creates and opens rings.
///
/// A ring is created with a kind, a capacity and a slot size, in a backing (POSIX, SysV,
/// anonymous or heap). Opening reads kind, capacity and slot size from the segment's header;
/// any of them set on the builder become expectations, checked against the header.
///
/// # Examples
/// ```
/// use shmring::Ring;
///
/// let name = format!("/shmring-doc-{}", std::process::id());
/// let created = Ring::builder().spsc().capacity(64).slot_size(32).posix(&name).create()?;
/// let opened = Ring::builder().posix(&name).open()?; // learns SPSC, 64, 32 from the header
/// assert_eq!((opened.capacity(), opened.slot_size()), (64, 32));
///
/// let mut tx = created.spsc_producer()?;
/// let mut rx = opened.spsc_consumer()?;
/// tx.try_send(b"hello")?;
/// let mut buf = [0u8; 32];
/// let n = rx.try_recv(&mut buf)?;
/// assert_eq!(&buf[..n], b"hello");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct RingBuilder {
    kind: Option<Kind>,
    capacity: Option<u64>,
    slot_size: Option<usize>,
    backing: Option<Backing>,
    opts: MapOptions,
    init_timeout: Duration,
    cleanup: Cleanup,
    wait: WaitOptions,
}

impl Default for RingBuilder {
    fn default() -> Self {
        RingBuilder::new()
    }
}

impl RingBuilder {
    /// A builder with nothing chosen: mode 0600, no prefault, no huge pages,
    /// [`DEFAULT_INIT_TIMEOUT`], [`Cleanup::Creator`].
    pub fn new() -> RingBuilder {
        RingBuilder {
            kind: None,
            capacity: None,
            slot_size: None,
            backing: None,
            opts: MapOptions {
                mode: 0o600,
                populate: false,
                huge_pages: false,
            },
            init_timeout: DEFAULT_INIT_TIMEOUT,
            cleanup: Cleanup::Creator,
            wait: WaitOptions::default(),
        }
    }

    /// Single producer, single consumer.
    pub fn spsc(self) -> Self {
        self.kind(Kind::Spsc)
    }

    /// Multiple producers, multiple consumers (capacity at least 2).
    pub fn mpmc(self) -> Self {
        self.kind(Kind::Mpmc)
    }

    /// Variable-length records, one producer and one consumer ([`records`](crate::records)):
    /// a message takes the bytes it needs. [`capacity`](Self::capacity) is then the data area
    /// in bytes (a power of two, [`MIN_RECORD_CAPACITY`](crate::MIN_RECORD_CAPACITY) to
    /// [`MAX_RECORD_CAPACITY`](crate::MAX_RECORD_CAPACITY)), and
    /// [`max_message`](Self::max_message) the largest record (default: a eighth of it).
    ///
    /// # Examples
    /// ```
    /// let ring = shmring::Ring::builder().records().capacity(64 * 1024).heap().create()?;
    /// assert_eq!(ring.slot_size(), 8 * 1024); // the largest message
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn records(self) -> Self {
        self.kind(Kind::Records)
    }

    /// Variable-length records, any number of producers and one consumer: as
    /// [`records`](Self::records), with producers reserving by compare-and-swap.
    pub fn records_mpsc(self) -> Self {
        self.kind(Kind::RecordsMpsc)
    }

    /// A record ring's largest message, in bytes: at most the capacity minus 8 (a record's
    /// header) and [`MAX_SLOT_SIZE`](crate::MAX_SLOT_SIZE). The same setting as
    /// [`slot_size`](Self::slot_size), named for record rings.
    pub fn max_message(self, bytes: usize) -> Self {
        self.slot_size(bytes)
    }

    /// The ring's algorithm.
    pub fn kind(mut self, kind: Kind) -> Self {
        self.kind = Some(kind);
        self
    }

    /// Number of slots: a power of two, at most [`MAX_CAPACITY`](crate::MAX_CAPACITY). For a
    /// record ring, the bytes of its data area (see [`records`](Self::records)).
    pub fn capacity(mut self, slots: u64) -> Self {
        self.capacity = Some(slots);
        self
    }

    /// Largest message, in bytes, at most [`MAX_SLOT_SIZE`](crate::MAX_SLOT_SIZE).
    pub fn slot_size(mut self, bytes: usize) -> Self {
        self.slot_size = Some(bytes);
        self
    }

    /// A POSIX shared-memory object. `"name"` and `"/name"` are the same object.
    pub fn posix(mut self, name: impl AsRef<str>) -> Self {
        self.backing = Some(Backing::Posix(name.as_ref().to_owned()));
        self
    }

    /// A System V segment with an explicit key.
    pub fn sysv(mut self, key: i32) -> Self {
        self.backing = Some(Backing::SysV(SysvKey::Key(key)));
        self
    }

    /// A System V segment keyed by `ftok(path, proj_id)`.
    pub fn sysv_path(mut self, path: impl Into<PathBuf>, proj_id: u8) -> Self {
        self.backing = Some(Backing::SysV(SysvKey::Path {
            path: path.into(),
            proj_id,
        }));
        self
    }

    /// An anonymous shared mapping, shared with children created by `fork` afterwards.
    pub fn anonymous(mut self) -> Self {
        self.backing = Some(Backing::Anonymous);
        self
    }

    /// Process-local memory, for rings between threads.
    pub fn heap(mut self) -> Self {
        self.backing = Some(Backing::Heap);
        self
    }

    /// Any backing.
    pub fn backing(mut self, backing: Backing) -> Self {
        self.backing = Some(backing);
        self
    }

    /// Permission bits of a new named segment (default `0o600`), applied whatever the umask.
    pub fn mode(mut self, mode: u32) -> Self {
        self.opts.mode = mode & 0o777;
        self
    }

    /// Fault every page in when mapping, so the first laps do not pay page faults.
    pub fn populate(mut self, on: bool) -> Self {
        self.opts.populate = on;
        self
    }

    /// Back the ring with huge pages (SysV and anonymous only; needs reserved huge pages).
    pub fn huge_pages(mut self, on: bool) -> Self {
        self.opts.huge_pages = on;
        self
    }

    /// How long [`open`](Self::open) waits for a creator to finish the header.
    pub fn init_timeout(mut self, timeout: Duration) -> Self {
        self.init_timeout = timeout;
        self
    }

    /// How blocking calls (`send`, `recv`, `claim`, `read` and their `_timeout` forms) of the
    /// endpoints attached through this handle wait; see [`WaitOptions`].
    pub fn wait(mut self, options: WaitOptions) -> Self {
        self.wait = options;
        self
    }

    /// Who removes a named segment; see [`Cleanup`].
    pub fn cleanup(mut self, cleanup: Cleanup) -> Self {
        self.cleanup = cleanup;
        self
    }

    fn geometry(&self) -> Result<Geometry, ConfigError> {
        let kind = self.kind.ok_or(ConfigError::Missing(
            "kind: call spsc(), mpmc(), records() or records_mpsc()",
        ))?;
        let capacity = self
            .capacity
            .ok_or(ConfigError::Missing("capacity: call capacity(slots)"))?;
        let slot_size = match self.slot_size {
            Some(size) => size,
            // A record ring's largest message defaults to an eighth of its data area.
            None if kind.is_records() => (capacity / 8).max(1) as usize,
            None => return Err(ConfigError::Missing("slot size: call slot_size(bytes)")),
        };
        Geometry::new(kind, capacity, slot_size)
    }

    /// The bytes a ring with this configuration occupies: header plus `capacity × stride`.
    ///
    /// # Errors
    /// The [`ConfigError`] that [`create`](Self::create) would report.
    ///
    /// # Examples
    /// ```
    /// let b = shmring::Ring::builder().spsc().capacity(1024).slot_size(8);
    /// assert_eq!(b.segment_size()?, 8192 + 1024 * 16);
    /// # Ok::<(), shmring::ConfigError>(())
    /// ```
    pub fn segment_size(&self) -> Result<usize, ConfigError> {
        Ok(self.geometry()?.total_size)
    }

    fn backing_ref(&self) -> Result<&Backing, ConfigError> {
        self.backing.as_ref().ok_or(ConfigError::Missing(
            "backing: call posix(name), sysv(key), anonymous() or heap()",
        ))
    }

    /// Creates a new ring; fails if a segment of that name or key exists.
    ///
    /// # Errors
    /// [`CreateError::Config`] for a bad configuration, [`CreateError::AlreadyExists`],
    /// [`CreateError::PermissionDenied`], or the OS error of the failing call.
    pub fn create(&self) -> Result<Ring, CreateError> {
        let geo = self.geometry()?;
        let backing = self.backing_ref()?.clone();
        let creator = EndpointWord::current(Role::Producer).0;
        let mut segment = match &backing {
            Backing::Posix(name) => segment::posix::create(
                &segment::posix::normalize_name(name)?,
                geo.total_size,
                &layout::identity_line(&geo, creator),
                &self.opts,
            )?,
            Backing::SysV(key) => segment::sysv::create(
                segment::sysv::ftok_key::<CreateError>(key)?,
                geo.total_size,
                &self.opts,
            )?,
            Backing::Anonymous => segment::anon::create(geo.total_size, &self.opts)?,
            Backing::Heap => segment::heap::create(geo.total_size)?,
        };
        if matches!(backing, Backing::Posix(_) | Backing::SysV(_))
            && self.cleanup == Cleanup::Creator
        {
            segment.remove_on_drop();
        }
        // SAFETY: the segment is fresh, zero-filled, page-aligned and `total_size` long; nobody
        // else reads it before the ready word.
        unsafe { layout::init(segment.base(), &geo, creator) };
        // SAFETY: just built for `geo`; `Shared` keeps the segment mapped as long as `mem`.
        let mem = unsafe {
            RingMem::new(
                segment.base(),
                geo,
                barrier::register(),
                segment.fault_flag(),
            )
        };
        Ok(Ring::new(mem, self.wait, backing, true, segment))
    }

    /// Opens an existing ring, validating its header, waiting up to the init timeout for a
    /// creator that is still building it.
    ///
    /// # Errors
    /// [`OpenError::NotFound`], [`OpenError::PermissionDenied`], and for a segment that is not
    /// a usable ring: [`OpenError::NotShmring`], [`OpenError::VersionMismatch`],
    /// [`OpenError::LayoutMismatch`] (also when it differs from what this builder asked for),
    /// [`OpenError::CorruptHeader`], [`OpenError::Truncated`], [`OpenError::NotInitialized`].
    pub fn open(&self) -> Result<Ring, OpenError> {
        let started = Instant::now();
        let backing = self.backing_ref()?.clone();
        let segment = match &backing {
            Backing::Posix(name) => segment::posix::open(
                &segment::posix::normalize_name(name)?,
                &self.opts,
                HEADER_SIZE,
                started,
                self.init_timeout,
            )?,
            Backing::SysV(key) => segment::sysv::open(
                segment::sysv::ftok_key::<OpenError>(key)?,
                &self.opts,
                HEADER_SIZE,
            )?,
            Backing::Anonymous | Backing::Heap => {
                return Err(ConfigError::Unsupported(
                    "opening an anonymous or heap ring: share the Ring handle (or fork) instead",
                )
                .into());
            }
        };
        let base = segment.base();
        // SAFETY: the open functions guarantee at least HEADER_SIZE mapped bytes, page-aligned,
        // mapped while `segment` lives (to the end of this function, or in the `Shared` that
        // takes it); every field of `Header` is atomic.
        let header = unsafe { base.cast::<layout::Header>().as_ref() };
        loop {
            if layout::read_ready(header) != 0 {
                break;
            }
            let fields = IdentityFields::load(header);
            if fields.magic() != 0 && fields.magic() != MAGIC {
                return Err(OpenError::NotShmring {
                    found: fields.magic(),
                });
            }
            if started.elapsed() >= self.init_timeout {
                return Err(unready(&fields, segment.len() as u64, started.elapsed()));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let geo = layout::validate(header, segment.len())?;
        let expectations = [
            (
                "kind",
                self.kind.map(|k| u64::from(k.code())),
                u64::from(geo.kind.code()),
            ),
            ("capacity", self.capacity, geo.capacity),
            (
                "slot_size",
                self.slot_size.map(|s| s as u64),
                geo.slot_size as u64,
            ),
        ];
        for (field, expected, found) in expectations {
            if let Some(expected) = expected.filter(|&e| e != found) {
                return Err(OpenError::LayoutMismatch {
                    field,
                    expected,
                    found,
                });
            }
        }
        // SAFETY: validated for `geo` within the mapping, which `Shared` keeps alive.
        let mem = unsafe { RingMem::new(base, geo, barrier::register(), segment.fault_flag()) };
        Ok(Ring::new(mem, self.wait, backing, false, segment))
    }

    /// Creates the ring, or opens it if it exists. Race-free: of any number of processes
    /// calling this at once, exactly one creates and initializes; the others wait for its ready
    /// word and attach (or time out with [`OpenError::NotInitialized`]).
    ///
    /// # Errors
    /// As [`open`](Self::open), and [`OpenError::Create`] for what [`create`](Self::create)
    /// reports; a ring that exists with another kind, capacity or slot size gives
    /// [`OpenError::LayoutMismatch`].
    pub fn open_or_create(&self) -> Result<Ring, OpenError> {
        if matches!(self.backing_ref()?, Backing::Anonymous | Backing::Heap) {
            return self.create().map_err(OpenError::Create);
        }
        self.geometry()?;
        // The segment can vanish between a failed create and the open (its creator failed and
        // removed it): try again a few times.
        let mut last = OpenError::NotFound;
        for _ in 0..8 {
            match self.create() {
                Err(CreateError::AlreadyExists) => {}
                other => return other.map_err(OpenError::Create),
            }
            match self.open() {
                Err(OpenError::NotFound) => last = OpenError::NotFound,
                other => return other,
            }
        }
        Err(last)
    }
}

/// The "not initialized" verdict on a segment whose identity line reads `fields` and whose
/// object is `object_len` bytes: it names the creator only if the line proves a shmring creator
/// wrote it (a foreign object's bytes never name a process: `admin::gc` acts on the verdict).
pub(crate) fn unready(fields: &IdentityFields, object_len: u64, waited: Duration) -> OpenError {
    let creator = layout::half_built(fields, object_len)
        .map(EndpointWord)
        .filter(|w| w.plausible_creator());
    OpenError::NotInitialized {
        waited,
        creator_pid: creator.map(EndpointWord::pid),
        creator_alive: creator.is_some_and(EndpointWord::is_alive),
    }
}

/// Where the cursors stand, as an observer can tell (a snapshot: they move while read).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cursors {
    /// The producer cursor: SPSC, derived from the slots (`spsc::cursors`), which a killed
    /// producer can leave ahead of the stored word; MPMC, the stored word.
    pub(crate) head: u64,
    /// The producer cursor word as stored.
    pub(crate) head_hint: u64,
    /// The consumer cursor.
    pub(crate) tail: u64,
}

impl Cursors {
    pub(crate) fn of(mem: &RingMem) -> Cursors {
        // Relaxed (both): a snapshot; nothing is read through it. Tail first: it never passes
        // the producer, so a head read after it is at least as far.
        let tail = mem.tail().load(Ordering::Relaxed);
        let head_hint = mem.head().load(Ordering::Relaxed);
        let head = match mem.geometry().kind {
            Kind::Spsc => spsc::cursors(mem).map_or(head_hint, |(head, _)| head),
            Kind::Records => crate::records::committed_end(mem).map_or(head_hint, |(end, _)| end),
            _ => head_hint,
        };
        Cursors {
            head,
            head_hint,
            tail,
        }
    }
}

/// A handle to a mapped ring. Cheap to clone; endpoints attach through it and keep the mapping
/// alive after the handle drops.
#[derive(Clone)]
pub struct Ring {
    shared: Arc<Shared>,
}

impl fmt::Debug for Ring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ring")
            .field("kind", &self.kind())
            .field("capacity", &self.capacity())
            .field("slot_size", &self.slot_size())
            .field("backing", &self.shared.backing)
            .finish()
    }
}

impl Ring {
    fn new(
        mem: RingMem,
        wait: WaitOptions,
        backing: Backing,
        created: bool,
        segment: Segment,
    ) -> Ring {
        Ring {
            shared: Arc::new(Shared::new(mem, wait, backing, created, segment)),
        }
    }

    pub(crate) fn shared(&self) -> &Shared {
        &self.shared
    }

    /// A [`RingBuilder`].
    pub fn builder() -> RingBuilder {
        RingBuilder::new()
    }

    /// The ring's kind.
    pub fn kind(&self) -> Kind {
        self.shared.mem.geometry().kind
    }

    /// Number of slots (a record ring: bytes of data).
    pub fn capacity(&self) -> u64 {
        self.shared.mem.geometry().capacity
    }

    /// Largest message, in bytes (for a record ring too).
    pub fn slot_size(&self) -> usize {
        self.shared.mem.geometry().slot_size
    }

    /// Bytes the ring occupies in its segment (header + capacity × stride).
    pub fn segment_size(&self) -> usize {
        self.shared.mem.geometry().total_size
    }

    /// Where the ring lives.
    pub fn backing(&self) -> &Backing {
        &self.shared.backing
    }

    /// Whether this handle created the ring (rather than opened it).
    pub fn created(&self) -> bool {
        self.shared.created
    }

    /// Messages in the ring that no consumer has taken, approximately (the cursors move while
    /// they are read); at most the capacity. SPSC: published and not yet received. MPMC:
    /// claimed by a producer and not yet by a consumer, so it includes messages still being
    /// written (a consumer answers `Pending` for those). A record ring: bytes, not messages
    /// (reserved and not yet released, headers and padding included). Cursors are compared with the wrapping
    /// difference `docs/layout.md` defines, so this stays right when they pass `u64::MAX`.
    pub fn len(&self) -> usize {
        let c = Cursors::of(&self.shared.mem);
        c.head.wrapping_sub(c.tail).min(self.capacity()) as usize
    }

    /// Whether [`len`](Self::len) is 0: on a quiescent ring, a consumer's `try_recv` answers
    /// `Empty` (or `Disconnected`).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether [`len`](Self::len) is the capacity: on a quiescent ring, a producer's
    /// `try_send` answers `Full` (or `Disconnected`).
    pub fn is_full(&self) -> bool {
        self.len() as u64 == self.capacity()
    }

    /// The endpoints registered in the segment, with whether their processes are alive.
    pub fn endpoints(&self) -> Vec<EndpointInfo> {
        registry::endpoints(self.shared.mem.header())
    }

    fn check_kind(&self, kind: Kind) -> Result<(), AttachError> {
        if self.kind() == kind {
            Ok(())
        } else {
            Err(AttachError::WrongKind {
                expected: kind,
                found: self.kind(),
            })
        }
    }

    /// Attaches the producer of an SPSC ring.
    ///
    /// # Errors
    /// [`AttachError::WrongKind`] on an MPMC ring; [`AttachError::RoleTaken`] while a live
    /// process holds the producer role; [`AttachError::Corrupt`] for inconsistent cursors.
    pub fn spsc_producer(&self) -> Result<spsc::Producer, AttachError> {
        self.check_kind(Kind::Spsc)?;
        spsc::Producer::attach(Arc::clone(&self.shared))
    }

    /// Attaches the consumer of an SPSC ring.
    ///
    /// # Errors
    /// As [`spsc_producer`](Self::spsc_producer), for the consumer role.
    pub fn spsc_consumer(&self) -> Result<spsc::Consumer, AttachError> {
        self.check_kind(Kind::Spsc)?;
        spsc::Consumer::attach(Arc::clone(&self.shared))
    }

    /// Attaches a producer to an MPMC ring.
    ///
    /// # Errors
    /// [`AttachError::WrongKind`] on an SPSC ring; [`AttachError::RegistryFull`].
    pub fn mpmc_producer(&self) -> Result<mpmc::Producer, AttachError> {
        self.check_kind(Kind::Mpmc)?;
        mpmc::Producer::attach(Arc::clone(&self.shared))
    }

    /// Attaches a consumer to an MPMC ring.
    ///
    /// # Errors
    /// As [`mpmc_producer`](Self::mpmc_producer).
    pub fn mpmc_consumer(&self) -> Result<mpmc::Consumer, AttachError> {
        self.check_kind(Kind::Mpmc)?;
        mpmc::Consumer::attach(Arc::clone(&self.shared))
    }

    /// Attaches a producer to a record ring (either kind: [`Kind::Records`] takes one,
    /// [`Kind::RecordsMpsc`] any number).
    ///
    /// # Errors
    /// [`AttachError::WrongKind`] on a slot ring; [`AttachError::RoleTaken`] (one producer);
    /// [`AttachError::RegistryFull`].
    pub fn records_producer(&self) -> Result<records::Producer, AttachError> {
        self.check_records()?;
        records::Producer::attach(Arc::clone(&self.shared))
    }

    /// Attaches the consumer of a record ring (one per ring, either kind).
    ///
    /// # Errors
    /// [`AttachError::WrongKind`] on a slot ring; [`AttachError::RoleTaken`].
    pub fn records_consumer(&self) -> Result<records::Consumer, AttachError> {
        self.check_records()?;
        records::Consumer::attach(Arc::clone(&self.shared))
    }

    fn check_records(&self) -> Result<(), AttachError> {
        if self.kind().is_records() {
            Ok(())
        } else {
            Err(AttachError::WrongKind {
                expected: Kind::Records,
                found: self.kind(),
            })
        }
    }

    /// Attaches a producer of whatever kind the ring is (a kind-erased [`Producer`]).
    ///
    /// # Errors
    /// As [`spsc_producer`](Self::spsc_producer) or [`mpmc_producer`](Self::mpmc_producer).
    ///
    /// # Examples
    /// ```
    /// let name = format!("/shmring-doc-erased-{}", std::process::id());
    /// let ring = shmring::Ring::builder().mpmc().capacity(4).slot_size(8).posix(&name).create()?;
    /// // Another process opens it by name, not knowing its kind:
    /// let opened = shmring::Ring::builder().posix(&name).open()?;
    /// let (mut tx, mut rx) = (opened.producer()?, opened.consumer()?);
    /// tx.send(b"any kind")?;
    /// let mut buf = [0u8; 8];
    /// assert_eq!(rx.recv(&mut buf)?, 8);
    /// # drop(ring);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn producer(&self) -> Result<Producer, AttachError> {
        Ok(match self.kind() {
            Kind::Spsc => self.spsc_producer()?.into(),
            Kind::Mpmc => self.mpmc_producer()?.into(),
            Kind::Records | Kind::RecordsMpsc => self.records_producer()?.into(),
        })
    }

    /// Attaches a consumer of whatever kind the ring is (a kind-erased [`Consumer`]).
    ///
    /// # Errors
    /// As [`spsc_consumer`](Self::spsc_consumer) or [`mpmc_consumer`](Self::mpmc_consumer).
    pub fn consumer(&self) -> Result<Consumer, AttachError> {
        Ok(match self.kind() {
            Kind::Spsc => self.spsc_consumer()?.into(),
            Kind::Mpmc => self.mpmc_consumer()?.into(),
            Kind::Records | Kind::RecordsMpsc => self.records_consumer()?.into(),
        })
    }
}
