//! EAL initialisation and the lcore launch trampoline.

use crate::{check, DpdkError};
use std::ffi::{c_int, c_void, CStr, CString};
use std::sync::atomic::{AtomicBool, Ordering};
use tandem_ffi as ffi;

static INITIALISED: AtomicBool = AtomicBool::new(false);

/// DPDK's text for an errno value.
pub fn strerror(code: i32) -> String {
    // SAFETY: rte_strerror returns a pointer to a static or thread-local NUL-terminated string.
    unsafe {
        let p = ffi::rte_strerror(code);
        if p.is_null() {
            return format!("error {code}");
        }
        CStr::from_ptr(p).to_string_lossy().into_owned()
    }
}

/// The EAL, initialised once per process. Dropping it does not clean up: call `cleanup`
/// after the workers have stopped and the ports are closed.
pub struct Eal {
    _private: (),
}

impl Eal {
    /// Initialises the EAL with `args` (argv without the program name).
    pub fn init(args: &[String]) -> Result<Eal, DpdkError> {
        if INITIALISED.swap(true, Ordering::SeqCst) {
            return Err(DpdkError {
                what: "EAL already initialised in this process".into(),
                code: libc::EALREADY,
            });
        }
        let mut owned: Vec<CString> = vec![CString::new("tandem").unwrap_or_default()];
        for a in args {
            owned.push(CString::new(a.as_str()).map_err(|_| DpdkError {
                what: format!("EAL argument {a:?} contains a NUL byte"),
                code: libc::EINVAL,
            })?);
        }
        // rte_eal_init may permute argv; give it pointers it can own for the process's life.
        let mut argv: Vec<*mut std::ffi::c_char> =
            owned.iter().map(|c| c.as_ptr() as *mut _).collect();
        let argc = argv.len() as c_int;
        // SAFETY: argv points at `argc` valid NUL-terminated strings kept alive below for the
        // whole process (leaked), as the EAL may keep references to them.
        let rc = unsafe { ffi::rte_eal_init(argc, argv.as_mut_ptr()) };
        std::mem::forget(owned);
        std::mem::forget(argv);
        if rc < 0 {
            // rte_errno, or (some failures leave it 0, such as another process holding the
            // file prefix's lock) the errno of the call that failed inside the EAL.
            let os = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
            // SAFETY: reads the calling thread's rte_errno.
            let e = unsafe { ffi::tandem_errno() };
            let code = if e != 0 { e } else { os };
            let hint = if e == 0 && (os == libc::EAGAIN || os == libc::EACCES) {
                " (is another DPDK process using this --file-prefix? DPDK's log above says)"
            } else {
                " (DPDK's log above says why)"
            };
            return Err(DpdkError {
                what: format!("rte_eal_init failed{hint}"),
                code: if code != 0 { code } else { libc::EINVAL },
            });
        }
        Ok(Eal { _private: () })
    }

    pub fn tsc_hz(&self) -> u64 {
        // SAFETY: valid after EAL init.
        unsafe { ffi::rte_get_tsc_hz() }
    }

    /// Runs `f` on EAL lcore `lcore`. A panic in `f` is caught and reported as exit code -1
    /// (unwinding across the C frame would be undefined behaviour).
    pub fn launch<F: FnOnce() -> i32 + Send + 'static>(
        &self,
        lcore: u32,
        f: F,
    ) -> Result<(), DpdkError> {
        let boxed: Box<Box<dyn FnOnce() -> i32 + Send>> = Box::new(Box::new(f));
        let arg = Box::into_raw(boxed) as *mut c_void;
        // SAFETY: `trampoline` takes ownership of `arg` (a leaked Box) exactly once.
        let rc = unsafe { ffi::rte_eal_remote_launch(Some(trampoline), arg, lcore) };
        if rc < 0 {
            // SAFETY: the launch failed, so the trampoline never ran: reclaim the box.
            drop(unsafe { Box::from_raw(arg as *mut Box<dyn FnOnce() -> i32 + Send>) });
        }
        check(rc, format!("rte_eal_remote_launch on lcore {lcore}")).map(|_| ())
    }

    /// Waits for the function on `lcore` to return; its return value.
    pub fn wait(&self, lcore: u32) -> i32 {
        // SAFETY: valid after EAL init; called from the main lcore.
        unsafe { ffi::rte_eal_wait_lcore(lcore) }
    }

    pub fn cleanup(self) {
        // SAFETY: all workers have returned and all ports are closed by the caller.
        unsafe {
            ffi::rte_eal_cleanup();
        }
    }
}

extern "C" fn trampoline(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the Box leaked by `Eal::launch`, handed to exactly one lcore.
    let f = unsafe { Box::from_raw(arg as *mut Box<dyn FnOnce() -> i32 + Send>) };
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(rc) => rc,
        Err(_) => {
            eprintln!("tandem: a worker panicked; it has stopped");
            -1
        }
    }
}

/// The current lcore id (valid on EAL lcores).
pub fn lcore_id() -> u32 {
    // SAFETY: reads a thread-local set by the EAL.
    unsafe { ffi::tandem_lcore_id() }
}

/// The TSC, for the workers' clock.
#[inline(always)]
pub fn rdtsc() -> u64 {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: reads the timestamp counter; no memory is touched.
    unsafe {
        std::arch::x86_64::_rdtsc()
    }
    #[cfg(not(target_arch = "x86_64"))]
    // SAFETY: reads the timestamp counter; no memory is touched.
    unsafe {
        ffi::tandem_rdtsc()
    }
}
