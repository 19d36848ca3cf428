//! A snapshot of the real Debian guest (OpenSBI, then the kernel) taken mid-boot,
//! right after the kernel's first virtio-blk request went to the host and before it
//! completed, restores into a machine that goes on exactly like the original until
//! the guest powers off: same state digests after every step, same console output,
//! same requests to the disk and the entropy source, same disk contents; and the
//! snapshot of the restored machine equals the original snapshot.

use ftvm_devices::{BackendCompletion, BackendRequest};
use ftvm_machine::{
    Environment, Machine, MachineConfig, Step, VirtioConfig, VirtualBackend, VirtualEnvironment,
};

/// What the guest runs once booted: direct reads and a write of the disk, a read of
/// the virtio entropy source, then power off.
const GUEST_COMMAND: &str = "dd if=/dev/vda of=/dev/null bs=4k count=16 iflag=direct; \
    echo written | dd of=/dev/vda bs=512 seek=8 conv=sync,fsync oflag=direct; \
    head -c 16 /dev/hwrng | od -x | head -1; poweroff -f";

/// A guest that has not powered off by then is broken.
const MAX_INSTRUCTIONS: u64 = 8_000_000_000;

/// A [`VirtualEnvironment`] that keeps every request the machine submits.
#[derive(Clone)]
struct Host {
    inner: VirtualEnvironment,
    submitted: Vec<(u64, usize, BackendRequest)>,
}

impl Environment for Host {
    fn now(&mut self, icount: u64) -> u64 {
        self.inner.now(icount)
    }
    fn idle(&mut self, icount: u64, now: u64, deadline: Option<u64>) -> Option<u64> {
        self.inner.idle(icount, now, deadline)
    }
    fn console_input(&mut self, icount: u64, max: usize) -> Vec<u8> {
        self.inner.console_input(icount, max)
    }
    fn wall_clock_base_ns(&mut self) -> u64 {
        self.inner.wall_clock_base_ns()
    }
    fn rng_seed(&mut self) -> [u8; 32] {
        self.inner.rng_seed()
    }
    fn submit(&mut self, icount: u64, slot: usize, request: BackendRequest) {
        self.submitted.push((icount, slot, request.clone()));
        self.inner.submit(icount, slot, request);
    }
    fn completions(&mut self, icount: u64) -> Vec<(usize, BackendCompletion)> {
        self.inner.completions(icount)
    }
}

fn config() -> MachineConfig {
    let images = ftvm_host::images::locate(&ftvm_host::images::default_cache_dir())
        .expect("guest images are fetched: run `ftvm images fetch` (scripts/setup does)");
    let read = |p: &std::path::Path| std::fs::read(p).expect("image readable");
    MachineConfig {
        memory_size: 128 << 20,
        firmware: read(&images.firmware),
        kernel: Some(read(&images.kernel)),
        initrd: Some(read(&images.initrd)),
        cmdline: format!("console=ttyS0 quiet -- eval \"{GUEST_COMMAND}\""),
        virtio: vec![
            VirtioConfig::Block {
                capacity_sectors: 2048,
                read_only: false,
                serial: "snapshot".into(),
            },
            VirtioConfig::Rng,
        ],
    }
}

/// Steps `vm` until the guest powers off, returning what must be the same for a
/// machine and its restored copy after each step, and the console output.
fn run_on(
    vm: &mut Machine,
    host: &mut Host,
) -> (Vec<(Step, u64, ftvm_machine::digest::Digest)>, Vec<u8>) {
    let mut steps = Vec::new();
    let mut console = Vec::new();
    while vm.icount() < MAX_INSTRUCTIONS {
        let step = vm.step(host).expect("step");
        console.extend(vm.take_console_output());
        steps.push((step, vm.icount(), vm.digest()));
        if step != Step::Running {
            break;
        }
    }
    (steps, console)
}

#[test]
fn test_linux_restored_with_a_disk_request_in_flight_goes_on_like_the_original() {
    let mut inner = VirtualEnvironment::new();
    let disk = (0..2048 * 512).map(|i| (i % 253) as u8).collect();
    inner.backends = vec![VirtualBackend::Disk(disk), VirtualBackend::Entropy];
    let mut host = Host {
        inner,
        submitted: Vec::new(),
    };
    let mut original = Machine::new(config(), &mut host).expect("machine builds");
    while host.submitted.is_empty() {
        assert_eq!(original.step(&mut host).expect("step"), Step::Running);
    }
    let snapshot = original.snapshot();
    let mut restored_host = host.clone();
    let submitted_before = host.submitted.len();

    let mut restored = Machine::from_snapshot(config(), &snapshot).expect("the snapshot restores");
    let resnapshot = restored.snapshot();
    // What a new host must be told is in flight: the request just submitted.
    let in_flight: Vec<(usize, BackendRequest)> = host
        .submitted
        .iter()
        .map(|(_, slot, request)| (*slot, request.clone()))
        .collect();
    assert_eq!(restored.in_flight_requests(), in_flight);
    assert_eq!(original.in_flight_requests(), in_flight);
    let (original_run, original_console) = run_on(&mut original, &mut host);
    let (restored_run, restored_console) = run_on(&mut restored, &mut restored_host);

    assert!(
        resnapshot == snapshot,
        "the restored machine's snapshot differs"
    );
    assert_eq!(original_run, restored_run);
    assert_eq!(original_console, restored_console);
    assert_eq!(host.submitted, restored_host.submitted);
    assert_eq!(
        format!("{:?}", host.inner.backends),
        format!("{:?}", restored_host.inner.backends),
        "the disks differ"
    );
    let console = String::from_utf8_lossy(&restored_console);
    assert_eq!(
        original_run.last().map(|(step, _, _)| *step),
        Some(Step::PowerOff(0)),
        "the guest did not power off:\n{console}"
    );
    assert!(
        console.contains("16+0 records out") && console.contains("1+0 records out"),
        "the guest did not read and write its disk:\n{console}"
    );
    assert!(
        host.submitted[submitted_before..]
            .iter()
            .any(|(_, _, r)| matches!(r, BackendRequest::Entropy { .. })),
        "the guest read no entropy after the snapshot"
    );
}
