using System.Net.Sockets;

namespace Gateway.Node;

/// <summary>
/// A listening Unix stream socket that only its owner may connect to (mode 0600), as the UAPI
/// and flow-log sockets are. A socket file left by a process that died is replaced; one that a
/// live process still serves is refused.
/// </summary>
internal static class OwnerOnlySocket
{
    /// <param name="servedThing">What the socket serves, for the "in use" message.</param>
    public static Socket Listen(string path, string servedThing)
    {
        if (File.Exists(path))
        {
            if (IsServed(path))
            {
                throw new IOException($"{path} is in use: another process already serves {servedThing}.");
            }
            File.Delete(path);
        }
        var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            // With the usual umask the fresh socket is not writable (connectable) by others;
            // connecting needs write permission, so tighten it to 0600 at once, as wireguard-go does.
            listener.Bind(new UnixDomainSocketEndPoint(path));
            File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
            listener.Listen(16);
        }
        catch
        {
            listener.Dispose();
            throw;
        }
        return listener;
    }

    private static bool IsServed(string path)
    {
        using var probe = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            probe.Connect(new UnixDomainSocketEndPoint(path));
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }
}
