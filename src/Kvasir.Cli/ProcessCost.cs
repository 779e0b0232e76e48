using System.Runtime.InteropServices;

namespace Kvasir.Cli;

/// <summary>
/// This process's CPU time and context switches so far, every thread included (also threads that ended), from
/// getrusage(RUSAGE_SELF) on Linux; elsewhere CPU time only. For benchmarks on a shared machine: CPU seconds per
/// GiB and context switches per slice move much less with the machine's load than GiB/s do.
/// </summary>
internal readonly record struct ProcessCost(double CpuSeconds, long VoluntarySwitches, long InvoluntarySwitches)
{
    private const int RUSAGE_SELF = 0;

    [StructLayout(LayoutKind.Sequential)]
    private struct RUsage
    {
        public long UserSeconds, UserMicroseconds, SystemSeconds, SystemMicroseconds;
        public long MaxRss, Ixrss, Idrss, Isrss, Minflt, Majflt, Nswap, Inblock, Oublock, Msgsnd, Msgrcv, Nsignals;
        public long Nvcsw, Nivcsw;
    }

#pragma warning disable SYSLIB1054 // LibraryImport needs unsafe blocks, which this project does not allow; a blittable out struct needs no marshalling
    [DllImport("libc", EntryPoint = "getrusage")]
    private static extern int GetRUsage(int who, out RUsage usage);
#pragma warning restore SYSLIB1054

    public long Switches => VoluntarySwitches + InvoluntarySwitches;

    public static ProcessCost Now()
    {
        if (OperatingSystem.IsLinux() && GetRUsage(RUSAGE_SELF, out var u) == 0)
            return new((u.UserSeconds + u.SystemSeconds) + (u.UserMicroseconds + u.SystemMicroseconds) / 1e6, u.Nvcsw, u.Nivcsw);
        return new(Environment.CpuUsage.TotalTime.TotalSeconds, 0, 0);
    }

    public static ProcessCost operator -(ProcessCost a, ProcessCost b) =>
        new(a.CpuSeconds - b.CpuSeconds, a.VoluntarySwitches - b.VoluntarySwitches, a.InvoluntarySwitches - b.InvoluntarySwitches);
}
