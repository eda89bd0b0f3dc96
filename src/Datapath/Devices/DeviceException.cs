namespace Gateway.Datapath.Devices;

/// <summary>A device could not be opened or configured; the message says why in user terms.</summary>
public sealed class DeviceException(string message, int errno = 0) : Exception(message)
{
    /// <summary>The Linux errno behind the failure, or 0.</summary>
    public int Errno { get; } = errno;

    internal static DeviceException FromErrno(string what, int errno)
    {
        string reason = errno switch
        {
            Interop.LibC.EPERM => "operation not permitted (needs root or CAP_NET_ADMIN)",
            Interop.LibC.ENOENT => "no such file or device",
            Interop.LibC.EBUSY => "device or resource busy",
            Interop.LibC.EINVAL => "invalid argument",
            _ => $"errno {errno}",
        };
        return new DeviceException($"{what}: {reason}", errno);
    }
}
