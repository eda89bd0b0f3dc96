using System.Runtime.InteropServices;
using Gateway.Datapath.Devices.Interop;

namespace Gateway.Datapath.Devices;

/// <summary>
/// Runs code inside a named network namespace (as made by `ip netns add NAME`). The work runs
/// on a dedicated thread that joins the namespace with setns(2), so the rest of the process is
/// untouched; sockets and TUN devices created there stay in that namespace for their lifetime.
/// </summary>
public static class NetworkNamespace
{
    public static T Run<T>(string name, Func<T> work)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        ArgumentNullException.ThrowIfNull(work);
        T result = default!;
        Exception? failure = null;
        var thread = new Thread(() =>
        {
            try
            {
                Enter(name);
                result = work();
            }
            catch (Exception e)
            {
                failure = e;
            }
        })
        { IsBackground = true, Name = $"netns:{name}" };
        thread.Start();
        thread.Join();
        if (failure is not null)
        {
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(failure);
        }
        return result;
    }

    /// <summary>Moves the calling thread into the namespace. The thread should not be reused
    /// for other work afterwards (use <see cref="Run{T}"/> unless you own the thread).</summary>
    public static void Enter(string name)
    {
        if (name.Contains('/') || name is "." or "..")
        {
            throw new DeviceException($"'{name}' is not a network namespace name.");
        }
        string path = $"/var/run/netns/{name}";
        int fd = LibC.Open(path, LibC.O_RDONLY | LibC.O_CLOEXEC);
        if (fd < 0)
        {
            throw DeviceException.FromErrno($"cannot open network namespace '{name}'", Marshal.GetLastPInvokeError());
        }
        try
        {
            if (LibC.SetNs(fd, LibC.CLONE_NEWNET) != 0)
            {
                throw DeviceException.FromErrno($"cannot enter network namespace '{name}'", Marshal.GetLastPInvokeError());
            }
        }
        finally
        {
            LibC.Close(fd);
        }
    }
}
