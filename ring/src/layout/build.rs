//! Building a header in place (the creator) and judging one (an opener, or a tool that found a
//! segment): the only code that reads the identity line.

use core::mem::offset_of;
use core::ptr::NonNull;

use super::{Geometry, HEADER_SIZE, Header, Identity, LAYOUT_VERSION, LINE, MAGIC, MAX_ENDPOINTS};
use crate::error::{GeometryField, OpenError};
use crate::kind::Kind;
use crate::sync::{Ordering, raw};

/// The identity line's fields as [`identity_line`] lays them, each with its value.
fn identity_fields(geo: &Geometry, creator: u64) -> IdentityFields {
    IdentityFields {
        magic: MAGIC,
        ready: 0,
        kind: geo.kind.code(),
        capacity: geo.capacity,
        slot_size: geo.slot_size as u64,
        stride: geo.stride as u64,
        payload_offset: geo.payload_offset as u64,
        slots_offset: HEADER_SIZE as u64,
        total: geo.total_size as u64,
        max_endpoints: MAX_ENDPOINTS as u32,
        creator,
    }
}

/// The identity line a creator writes before anything else (the ready word still 0), so that
/// a segment of ours is recognisable from its first bytes even if its creator dies before
/// finishing it: the POSIX backend writes these bytes before sizing the object
/// (`segment::posix`), and [`init`] stores the same fields again in place.
pub(crate) fn identity_line(geo: &Geometry, creator: u64) -> [u8; LINE] {
    let f = identity_fields(geo, creator);
    let mut line = [0u8; LINE];
    let mut put =
        |offset: usize, bytes: &[u8]| line[offset..offset + bytes.len()].copy_from_slice(bytes);
    put(offset_of!(Identity, magic), &f.magic.to_le_bytes());
    put(offset_of!(Identity, ready), &f.ready.to_le_bytes());
    put(offset_of!(Identity, kind), &f.kind.to_le_bytes());
    put(offset_of!(Identity, capacity), &f.capacity.to_le_bytes());
    put(offset_of!(Identity, slot_size), &f.slot_size.to_le_bytes());
    put(offset_of!(Identity, slot_stride), &f.stride.to_le_bytes());
    put(
        offset_of!(Identity, payload_offset),
        &f.payload_offset.to_le_bytes(),
    );
    put(
        offset_of!(Identity, slots_offset),
        &f.slots_offset.to_le_bytes(),
    );
    put(offset_of!(Identity, total_size), &f.total.to_le_bytes());
    put(
        offset_of!(Identity, max_endpoints),
        &f.max_endpoints.to_le_bytes(),
    );
    put(offset_of!(Identity, creator), &f.creator.to_le_bytes());
    line
}

/// The length word of an SPSC slot never written: larger than any slot, so a reader that
/// mistook such a slot for a published one reports a corrupt length instead of delivering a
/// message nobody sent.
pub(crate) const SPSC_NEVER_WRITTEN: u32 = u32::MAX;

/// The sequence word of SPSC slot `idx` never written: `idx` itself. The sequence word of
/// cursor `c` (in slot `c mod capacity`) is `(c + 1) mod 2^32`, which is `idx + 1` modulo the
/// capacity (a power of two that divides 2^32), never `idx` when the capacity is at least 2,
/// whatever the cursors start from. (With a capacity of 1 every value is someone's; then
/// [`SPSC_NEVER_WRITTEN`] catches the collision.)
pub(crate) fn spsc_initial_seq(idx: usize) -> u32 {
    idx as u32
}

/// Builds a fresh header and slot array in place, storing the ready word last.
///
/// # Safety
/// - `base` is valid for reads and writes of `geo.total_size` bytes and 128-byte aligned, and
///   stays mapped for the call.
/// - The memory is zeroed (except for the [`identity_line`] the backend may have written first),
///   and nobody else writes it before the ready word is stored.
pub(crate) unsafe fn init(base: NonNull<u8>, geo: &Geometry, creator: u64) {
    // SAFETY: `base` is valid, aligned and at least `HEADER_SIZE` long (caller's duty, and
    // `total_size >= HEADER_SIZE`); every field of `Header` is atomic.
    let h = unsafe { base.cast::<Header>().as_ref() };
    // Relaxed (all, until the ready word): published by its Release store below.
    let f = identity_fields(geo, creator);
    let id = &h.id;
    id.magic.store(f.magic, Ordering::Relaxed);
    id.kind.store(f.kind, Ordering::Relaxed);
    id.capacity.store(f.capacity, Ordering::Relaxed);
    id.slot_size.store(f.slot_size, Ordering::Relaxed);
    id.slot_stride.store(f.stride, Ordering::Relaxed);
    id.payload_offset.store(f.payload_offset, Ordering::Relaxed);
    id.slots_offset.store(f.slots_offset, Ordering::Relaxed);
    id.total_size.store(f.total, Ordering::Relaxed);
    id.max_endpoints.store(f.max_endpoints, Ordering::Relaxed);
    id.creator.store(f.creator, Ordering::Relaxed);
    h.head.value.store(0, Ordering::Relaxed);
    h.tail.value.store(0, Ordering::Relaxed);
    // A record ring's data area starts zeroed, which is all it needs (`records`).
    let slots = if geo.kind.is_records() {
        0
    } else {
        geo.capacity as usize
    };
    for i in 0..slots {
        // SAFETY: `i < capacity`, so the slot lies inside the `total_size` bytes; its first
        // word is 8-byte aligned (HEADER_SIZE and stride are multiples of 8).
        unsafe {
            let slot = base.as_ptr().add(HEADER_SIZE + i * geo.stride);
            if geo.kind == Kind::Spsc {
                (*slot.cast::<raw::AtomicU32>()).store(SPSC_NEVER_WRITTEN, Ordering::Relaxed);
                (*slot.add(4).cast::<raw::AtomicU32>())
                    .store(spsc_initial_seq(i), Ordering::Relaxed);
            } else {
                (*slot.cast::<raw::AtomicU64>()).store(i as u64, Ordering::Relaxed);
            }
        }
    }
    crate::hooks::before_ready();
    // Release: pairs with the Acquire load in `read_ready` (openers): every field and slot word
    // written above is visible to whoever sees the version.
    id.ready.store(LAYOUT_VERSION, Ordering::Release);
}

/// The ready word, loaded with Acquire (pairs with the Release store that ends `init`).
pub(crate) fn read_ready(h: &Header) -> u32 {
    h.id.ready.load(Ordering::Acquire)
}

/// The identity line's fields as read, before any is trusted.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IdentityFields {
    magic: u64,
    ready: u32,
    kind: u32,
    capacity: u64,
    slot_size: u64,
    stride: u64,
    payload_offset: u64,
    slots_offset: u64,
    total: u64,
    max_endpoints: u32,
    creator: u64,
}

impl IdentityFields {
    /// The fields of a line read as bytes (`pread` of an object not mapped).
    pub(crate) fn parse(line: &[u8; LINE]) -> IdentityFields {
        let u64_at = |o: usize| u64::from_le_bytes(line[o..o + 8].try_into().unwrap_or([0; 8]));
        let u32_at = |o: usize| u32::from_le_bytes(line[o..o + 4].try_into().unwrap_or([0; 4]));
        IdentityFields {
            magic: u64_at(offset_of!(Identity, magic)),
            ready: u32_at(offset_of!(Identity, ready)),
            kind: u32_at(offset_of!(Identity, kind)),
            capacity: u64_at(offset_of!(Identity, capacity)),
            slot_size: u64_at(offset_of!(Identity, slot_size)),
            stride: u64_at(offset_of!(Identity, slot_stride)),
            payload_offset: u64_at(offset_of!(Identity, payload_offset)),
            slots_offset: u64_at(offset_of!(Identity, slots_offset)),
            total: u64_at(offset_of!(Identity, total_size)),
            max_endpoints: u32_at(offset_of!(Identity, max_endpoints)),
            creator: u64_at(offset_of!(Identity, creator)),
        }
    }

    /// The fields of a mapped header, each loaded once.
    pub(crate) fn load(h: &Header) -> IdentityFields {
        let id = &h.id;
        // Acquire: pairs with the Release store that ends `init`, so the loads below see the
        // fields the creator stored before it (whatever else has been written since).
        let ready = id.ready.load(Ordering::Acquire);
        // Relaxed (all): ordered by the Acquire above; each value is checked before use.
        IdentityFields {
            magic: id.magic.load(Ordering::Relaxed),
            ready,
            kind: id.kind.load(Ordering::Relaxed),
            capacity: id.capacity.load(Ordering::Relaxed),
            slot_size: id.slot_size.load(Ordering::Relaxed),
            stride: id.slot_stride.load(Ordering::Relaxed),
            payload_offset: id.payload_offset.load(Ordering::Relaxed),
            slots_offset: id.slots_offset.load(Ordering::Relaxed),
            total: id.total_size.load(Ordering::Relaxed),
            max_endpoints: id.max_endpoints.load(Ordering::Relaxed),
            creator: id.creator.load(Ordering::Relaxed),
        }
    }

    /// The first word.
    pub(crate) fn magic(&self) -> u64 {
        self.magic
    }

    /// The geometry these fields describe, if they are a shmring identity line: the magic,
    /// a known kind, a valid geometry, and every derived field as derived. The ready word is
    /// the caller's business.
    fn geometry(&self) -> Result<Geometry, OpenError> {
        if self.magic != MAGIC {
            return Err(OpenError::NotShmring { found: self.magic });
        }
        let kind = Kind::from_code(self.kind).ok_or(OpenError::CorruptHeader {
            field: "kind",
            found: u64::from(self.kind),
            reason: "no kind this version knows (1 SPSC, 2 MPMC, 3 RECORDS, 4 RECORDS-MPSC): \
                     a ring of a newer shmring, or not a ring",
        })?;
        let slot_size = usize::try_from(self.slot_size).unwrap_or(usize::MAX);
        let geo = Geometry::new(kind, self.capacity, slot_size).map_err(|e| {
            let fault = e.geometry_fault();
            let field = fault.map_or(GeometryField::SlotSize, |f| f.field);
            OpenError::CorruptHeader {
                field: field.name(),
                found: match field {
                    GeometryField::Capacity => self.capacity,
                    GeometryField::SlotSize => self.slot_size,
                },
                reason: fault.map_or("invalid", |f| f.reason),
            }
        })?;
        let derived = [
            ("slot_stride", geo.stride as u64, self.stride),
            (
                "payload_offset",
                geo.payload_offset as u64,
                self.payload_offset,
            ),
            ("slots_offset", HEADER_SIZE as u64, self.slots_offset),
            ("total_size", geo.total_size as u64, self.total),
        ];
        for (field, expected, found) in derived {
            if expected != found {
                return Err(OpenError::LayoutMismatch {
                    field,
                    expected,
                    found,
                });
            }
        }
        Ok(geo)
    }
}

/// Validates a header whose ready word has been seen non-zero, against the mapping length.
///
/// Every field is loaded once (the segment may change under us) and checked against the others
/// before any is used.
pub(crate) fn validate(h: &Header, map_len: usize) -> Result<Geometry, OpenError> {
    let fields = IdentityFields::load(h);
    if fields.magic != MAGIC {
        return Err(OpenError::NotShmring {
            found: fields.magic,
        });
    }
    if fields.ready != LAYOUT_VERSION {
        return Err(OpenError::VersionMismatch {
            supported: LAYOUT_VERSION,
            found: fields.ready,
        });
    }
    let geo = fields.geometry()?;
    if geo.total_size > map_len {
        return Err(OpenError::Truncated {
            needed: geo.total_size as u64,
            found: map_len as u64,
        });
    }
    Ok(geo)
}

/// The creator of a segment that is a shmring ring under construction, judged from its identity
/// line alone: complete and consistent (as [`identity_line`] writes it before anything else),
/// the ready word still 0, and the object as long as a creator leaves it (`LINE` bytes if it
/// died before sizing it, or the whole ring). Anything else is not provably ours: `None`.
pub(crate) fn half_built(fields: &IdentityFields, object_len: u64) -> Option<u64> {
    let geo = fields.geometry().ok()?;
    let sized = object_len == LINE as u64 || object_len == geo.total_size as u64;
    (fields.ready == 0 && sized && fields.creator != 0).then_some(fields.creator)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_identity_line_is_what_init_stores_and_validate_accepts() {
        let geo = Geometry::new(Kind::Mpmc, 64, 100).unwrap();
        let fields = IdentityFields::parse(&identity_line(&geo, 42));
        assert_eq!(fields.geometry().unwrap(), geo);
        assert_eq!(half_built(&fields, geo.total_size as u64), Some(42));
        assert_eq!(half_built(&fields, LINE as u64), Some(42));
        assert_eq!(half_built(&fields, 4096), None, "a size no creator leaves");
        let mut line = identity_line(&geo, 42);
        line[offset_of!(Identity, total_size)] ^= 1;
        assert_eq!(half_built(&IdentityFields::parse(&line), LINE as u64), None);
    }
}
