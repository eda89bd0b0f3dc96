using System.Runtime.InteropServices;

namespace Gateway.Datapath.Devices.Interop;

internal static partial class LibC
{
    [LibraryImport(Name, EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Open(string path, int flags);
}
