import Foundation

/// Counts failed logins per (user, source address) and locks a pair out after too many.
/// Thread-safe: the SSH listener calls it from many session queues.
public final class LoginThrottle: @unchecked Sendable {
    private struct Key: Hashable { var user: String; var address: String }
    private struct Record { var failures: [Date] = []; var lockedUntil: Date? }

    private let lock = NSLock()
    private var records: [Key: Record] = [:]
    private let maxFailures: Int
    private let window: TimeInterval
    private let lockout: TimeInterval
    private let now: @Sendable () -> Date

    public init(maxFailures: Int = 5, window: TimeInterval = 300, lockout: TimeInterval = 300,
                now: @escaping @Sendable () -> Date = Date.init) {
        self.maxFailures = maxFailures
        self.window = window
        self.lockout = lockout
        self.now = now
    }

    /// True while the pair is locked out; attempts then fail without checking credentials.
    public func isLocked(user: String, address: String) -> Bool {
        lock.withLock {
            let key = Key(user: user, address: address)
            guard let until = records[key]?.lockedUntil else { return false }
            if until > now() { return true }
            records[key] = nil
            return false
        }
    }

    /// Records a failure; returns true when this failure starts a lockout.
    @discardableResult
    public func recordFailure(user: String, address: String) -> Bool {
        lock.withLock {
            let key = Key(user: user, address: address)
            let t = now()
            var record = records[key] ?? Record()
            record.failures = record.failures.filter { t.timeIntervalSince($0) < window } + [t]
            var locked = false
            if record.failures.count >= maxFailures && record.lockedUntil == nil {
                record.lockedUntil = t.addingTimeInterval(lockout)
                locked = true
            }
            records[key] = record
            if records.count > 100_000 { prune(at: t) }
            return locked
        }
    }

    public func recordSuccess(user: String, address: String) {
        lock.withLock { _ = records.removeValue(forKey: Key(user: user, address: address)) }
    }

    private func prune(at t: Date) {
        records = records.filter { _, r in
            (r.lockedUntil.map { $0 > t } ?? false) || r.failures.contains { t.timeIntervalSince($0) < window }
        }
    }
}
