import Foundation

/// A fixed set of plain threads running submitted jobs in order of submission.
///
/// For work that blocks or burns CPU for long (connecting to an asset, compressing a
/// recording). Such work must not sit on Dispatch's global queues: libdispatch on Linux sizes
/// them to the CPU count and learns only slowly that a worker is blocked, so it would starve
/// the session queues queued behind it.
public final class WorkerThreads: @unchecked Sendable {
    private let condition = NSCondition()
    private var jobs: [() -> Void] = []
    private var head = 0

    public init(name: String, count: Int, qualityOfService: QualityOfService = .default) {
        for i in 0..<count {
            let thread = Thread { [unowned self] in self.work() }
            thread.name = count == 1 ? name : "\(name)-\(i)"
            thread.stackSize = 1 << 20
            thread.qualityOfService = qualityOfService
            thread.start()
        }
    }

    public func submit(_ job: @escaping () -> Void) {
        condition.lock()
        jobs.append(job)
        condition.signal()
        condition.unlock()
    }

    private func work() {
        while true {
            condition.lock()
            while head == jobs.count { condition.wait() }
            let job = jobs[head]
            head += 1
            if head >= 1024 {
                jobs.removeFirst(head)
                head = 0
            }
            condition.unlock()
            job()
        }
    }

    /// Finished recordings are compressed here, one at a time, at low priority.
    public static let compression = WorkerThreads(name: "gatehouse-compressor", count: 1, qualityOfService: .background)
}
