using System.Runtime.InteropServices;

namespace Gateway.Crypto.Interop;

internal static partial class Sodium
{
    [LibraryImport(Library, EntryPoint = "sodium_init")]
    private static partial int SodiumInit();
}
