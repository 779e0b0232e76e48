// Tests write hundreds of MiB to disk and run node processes; on a 2-core machine they run one at a time.
[assembly: CollectionBehavior(DisableTestParallelization = true)]
