namespace LlavaMech.Model.Tests;

/// <summary>Tests that time passes run alone: xUnit runs this collection after the parallel ones, with nothing beside it.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class TimingCollection
{
    public const string Name = "timing";
}
