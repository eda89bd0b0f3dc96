namespace Gateway.Tunnel.Uapi;

/// <summary>
/// The errno values of the reply line "errno=N". As in wireguard-go (ipc/uapi_unix.go) they are
/// negative Linux errno numbers, which is what `wg` expects: it reads the number, and reports
/// strerror(-N) ("Invalid argument" for -22).
/// </summary>
public static class UapiErrno
{
    public const int Ok = 0;
    public const int IO = -5;          // -EIO
    public const int Invalid = -22;    // -EINVAL: bad key or value
    public const int Protocol = -71;   // -EPROTO: a line without '='
    public const int PortInUse = -98;  // -EADDRINUSE
    public const int Unknown = -55;    // wireguard-go's IpcErrorUnknown
}
