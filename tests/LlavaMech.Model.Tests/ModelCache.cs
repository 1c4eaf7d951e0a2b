using LlavaMech.Testing;

namespace LlavaMech.Model.Tests;

/// <summary>Each fixture model loaded once per test run (loading is validated elsewhere).</summary>
public static class ModelCache
{
    private static readonly Dictionary<string, LoadedModel> Models = new();

    public static LoadedModel Get(string name)
    {
        lock (Models)
        {
            if (!Models.TryGetValue(name, out var m)) Models[name] = m = LoadedModel.Load(Fixtures.Model(name));
            return m;
        }
    }
}
