//! Plain data: the only values the typed API lets cross a process boundary.

/// A type whose values may be copied byte for byte into shared memory and read back by another
/// process.
///
/// # Safety
/// Implement it only for types that are plain data:
/// - no pointers, references or handles (they mean nothing in another address space);
/// - no `Drop` (guaranteed by `Copy`);
/// - every bit pattern of `size_of::<Self>()` bytes is a valid value, because a peer process (or
///   corruption) may have written anything;
/// - a layout every process agrees on: `#[repr(C)]` or `#[repr(transparent)]` for structs, and
///   fixed-width fields (not `usize`, if 32- and 64-bit processes share the ring).
///
/// Padding bytes are allowed; they are copied but never interpreted.
///
/// # Examples
/// ```
/// #[derive(Clone, Copy, Debug, PartialEq)]
/// #[repr(C)]
/// struct Tick {
///     price: f64,
///     qty: u32,
///     venue: u32,
/// }
/// // SAFETY: repr(C), fixed-width numeric fields only; every bit pattern is a valid Tick.
/// unsafe impl shmring::Plain for Tick {}
///
/// let ring = shmring::Ring::builder().spsc().capacity(8).slot_size(16).heap().create()?;
/// let (mut tx, mut rx) = (ring.spsc_producer()?, ring.spsc_consumer()?);
/// tx.try_send_value(Tick { price: 1.5, qty: 10, venue: 3 })?;
/// assert_eq!(rx.try_recv_value::<Tick>()?, Tick { price: 1.5, qty: 10, venue: 3 });
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub unsafe trait Plain: Copy + Send + 'static {}

macro_rules! plain {
    ($($t:ty)*) => {
        $(
            // SAFETY: a primitive number: no pointers, every bit pattern valid.
            unsafe impl Plain for $t {}
        )*
    };
}

plain!(u8 u16 u32 u64 u128 i8 i16 i32 i64 i128 f32 f64);

// SAFETY: zero-sized, no bits to be invalid.
unsafe impl Plain for () {}

// SAFETY: an array of plain data is plain data: no padding between elements, every element valid.
unsafe impl<T: Plain, const N: usize> Plain for [T; N] {}

/// Refuses a value larger than a slot, handing it back.
pub(crate) fn check_fits<T: Plain>(value: &T, max: usize) -> Result<(), crate::TrySendError<T>> {
    let len = core::mem::size_of::<T>();
    if len > max {
        return Err(crate::TrySendError::TooLarge {
            msg: *value,
            len,
            max,
        });
    }
    Ok(())
}

/// Refuses a message that is not exactly one `T`.
pub(crate) fn check_size<T: Plain>(len: usize) -> Result<(), crate::TryRecvError> {
    let expected = core::mem::size_of::<T>();
    if len != expected {
        return Err(crate::TryRecvError::SizeMismatch {
            expected,
            found: len,
        });
    }
    Ok(())
}
