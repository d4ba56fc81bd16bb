//! The one run-time SIMD dispatch of the library: a function compiled for the baseline
//! target and, on x86-64, again with AVX2, the faster chosen when the CPU has it.

/// Defines each function twice, for the baseline target and (on x86-64) with AVX2, and
/// picks one at run time. The bodies use only exactly rounded operations (no fused
/// multiply-add), so both versions give bit-identical results.
macro_rules! multiversion {
    ($($(#[$doc:meta])* fn $name:ident($($arg:ident: $ty:ty),*) $(-> $ret:ty)? $body:block)*) => {$(
        $(#[$doc])*
        #[inline]
        fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn imp($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2")]
                unsafe fn avx2($($arg: $ty),*) $(-> $ret)? {
                    imp($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU has AVX2 (checked just above).
                    return unsafe { avx2($($arg),*) };
                }
            }
            imp($($arg),*)
        }
    )*};
}

pub(crate) use multiversion;
